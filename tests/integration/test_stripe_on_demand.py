"""The processes' Stripe gateway loads the SDK on the first call to Stripe, not when the services are built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.localstripe import SECRET_KEY as LOCALSTRIPE_KEY
from tests.support.localstripe import LocalStripe

PROBE = """
import json, sys
from billing_core.bootstrap import build_services
from billing_core.config import Settings

url, key, base = sys.argv[1:4]
settings = Settings(_env_file=None, database_url=url, stripe_secret=key, stripe_test_mode=True, stripe_api_base=base)
services = build_services(settings)
built = "stripe" in sys.modules
customer = services.stripe.gateway.create_customer(
    company_id=1, name="Praxis Dr. Weber", email="weber@example.com", idempotency_key="probe-customer-1"
)
print(json.dumps({"sdk_when_built": built, "sdk_after_call": "stripe" in sys.modules, "customer": customer}))
services.close()
"""


def test_services_with_stripe_configured_load_the_sdk_on_the_first_stripe_call(
    localstripe: LocalStripe, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    args = [sys.executable, "-c", PROBE, url, LOCALSTRIPE_KEY, localstripe.url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["sdk_when_built"] is False
    assert answer["sdk_after_call"] is True
    assert answer["customer"].startswith("cus_")
