"""``billing run``: the whole system for local use in one supervised process group.

Migrates the database, loads demo data into an empty one, and starts the webhook sidecar with its
worker. Without ``STRIPE_SECRET`` it runs in emulator mode: localstripe stands in for Stripe (its webhooks
registered to our endpoint), an SMTP sink writes every mail as an ``.eml`` file under ``./var/mail/``, and
top-up links open the sidecar's test checkout page. Where everything listens goes to ``./var/run.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from billing_cli.local_system import RUN_FILE, VAR_DIR
from billing_cli.supervisor import ChildFailed, ChildSpec, Interrupted, Supervisor, http_ready, port_ready
from billing_core.config import Settings
from billing_core.errors import BillingError

SECRETS_FILE = VAR_DIR / "local-secrets.json"
EMULATOR_PUBLISHABLE_KEY = "pk_test_localstripe"
LOCAL_SCOPES = "billing:read billing:refund billing:approve"


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def some_free_port(preferred: int) -> int:
    if port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_secrets() -> dict[str, str]:
    """Keys made up once for local use (emulator key, webhook secret, Retell key) and kept for later runs."""
    try:
        known: dict[str, str] = json.loads(SECRETS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        known = {}
    wanted: dict[str, Callable[[], str]] = {
        "stripe_secret": lambda: f"sk_test_local_{secrets.token_hex(12)}",
        "stripe_webhook_secret": lambda: f"whsec_{secrets.token_hex(24)}",
        "retell_api_key": lambda: f"key_local_{secrets.token_hex(16)}",
    }
    changed = False
    for name, make in wanted.items():
        if not known.get(name):
            known[name] = make()
            changed = True
    if changed:
        write_private(SECRETS_FILE, known)
    return known


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only (it holds local keys), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    temporary.replace(path)


@dataclass
class Plan:
    """What this run starts and with which settings; becomes ``./var/run.json``."""

    settings: Settings
    host: str
    webhook_port: int
    mcp_port: int
    emulator_port: int | None
    smtp_port: int | None
    chosen: dict[str, str]  # settings billing run decided for its children (never the operator's own keys)
    mcp_token: str = ""

    @property
    def mcp_url(self) -> str:
        return f"http://{self.host}:{self.mcp_port}/mcp"

    @property
    def emulator(self) -> bool:
        return self.emulator_port is not None

    @property
    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.webhook_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.chosen)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def make_plan(settings: Settings, *, host: str, webhook_port: int, mcp_port: int) -> Plan:
    chosen: dict[str, str] = {"DATABASE_URL": settings.database_url}
    emulator_port = smtp_port = None
    keys = local_secrets()
    if settings.missing_seller_settings():  # the demo's seller on the demo's invoices, for every child
        chosen.update(demo_seller_env())
    if not settings.retell_api_key.get_secret_value():
        chosen["RETELL_API_KEY"] = keys["retell_api_key"]
    if not settings.stripe_secret.get_secret_value():
        emulator_port = some_free_port(8420)
        chosen.update(
            STRIPE_SECRET=keys["stripe_secret"],
            STRIPE_KEY=EMULATOR_PUBLISHABLE_KEY,
            STRIPE_API_BASE=f"http://127.0.0.1:{emulator_port}",
            STRIPE_TEST_MODE="true",
            STRIPE_WEBHOOK_SECRET=keys["stripe_webhook_secret"],
            BILLING_TEST_CHECKOUT_URL=f"http://{host}:{webhook_port}/test-checkout",
        )
        if not settings.smtp_url:
            smtp_port = some_free_port(8025)
            chosen["SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    return Plan(settings, host, webhook_port, mcp_port, emulator_port, smtp_port, chosen)


def demo_seller_env() -> dict[str, str]:
    """The demo seller (billing_cli.demo) under the environment names the children read."""
    from pydantic import AliasChoices

    from billing_cli.demo import DEMO_SELLER

    env: dict[str, str] = {}
    for name, value in DEMO_SELLER.items():
        alias = Settings.model_fields[name].validation_alias
        assert isinstance(alias, AliasChoices)
        env[str(alias.choices[0])] = value
    return env


def run_system(plan: Plan, *, echo: Any = click.echo) -> int:
    """Start everything, print where it is, supervise until Ctrl-C or SIGTERM; returns the exit code."""
    supervisor = Supervisor(VAR_DIR / "logs", report=lambda text: echo(f"[billing run] {text}", err=True))
    previous = {
        sig: signal.signal(sig, lambda *_: supervisor.request_stop()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    python = sys.executable
    try:
        if plan.emulator:
            echo("emulator mode: STRIPE_SECRET is not set, so localstripe stands in for Stripe (no real payments)")
            supervisor.start(
                ChildSpec(
                    "stripe-emulator",
                    [python, "-m", "billing_cli.stripe_emulator", "--port", str(plan.emulator_port),
                     "--store", str(VAR_DIR / "stripe-emulator" / "store.pickle")],
                    ready=port_ready(plan.emulator_port or 0),
                    env=plan.child_env(),
                    after_start=lambda: register_emulator_webhook(plan),
                )
            )
        if plan.smtp_port is not None:
            supervisor.start(
                ChildSpec(
                    "mail-sink",
                    [python, "-m", "billing_cli.mail_sink", "--port", str(plan.smtp_port), "--dir",
                     str(VAR_DIR / "mail")],
                    ready=port_ready(plan.smtp_port),
                    env=plan.child_env(),
                )
            )
        if supervisor.stopping:
            raise Interrupted("stopped before the demo data was loaded")
        seeded = load_demo_if_empty(plan)
        echo("demo data loaded" if seeded else "existing data kept")
        plan.mcp_token = local_mcp_token(plan)
        supervisor.start(
            ChildSpec(
                "webhooks",
                [python, "-m", "billing_cli", "webhooks", "--host", plan.host, "--port", str(plan.webhook_port)],
                ready=http_ready(f"{plan.webhook_url}/readyz"),
                env=plan.child_env(),
            )
        )
        supervisor.start(
            ChildSpec(
                "mcp",
                [python, "-m", "billing_cli", "mcp", "--transport", "http", "--host", plan.host,
                 "--port", str(plan.mcp_port)],
                ready=http_ready(f"http://{plan.host}:{plan.mcp_port}/healthz"),
                env=plan.child_env(),
            )
        )

        def record() -> None:
            write_private(RUN_FILE, describe(plan, supervisor))

        record()
        print_summary(plan, echo)
        supervisor.watch(on_change=record)
        return 0
    except ChildFailed as error:
        echo(f"[billing run] {error}", err=True)
        return 1
    except BillingError as error:
        echo(f"[billing run] error ({error.code}): {error.message}", err=True)
        return 1
    except Interrupted as error:
        echo(f"[billing run] {error}", err=True)
        return 130
    finally:
        supervisor.stop_all()
        if RUN_FILE.exists():
            try:
                if json.loads(RUN_FILE.read_text()).get("pid") == os.getpid():
                    RUN_FILE.unlink()
            except ValueError:
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        echo("[billing run] stopped every child", err=True)


def register_emulator_webhook(plan: Plan) -> None:
    """localstripe forgets its webhooks on restart, so this runs after every (re)start of the emulator."""
    response = httpx.post(
        f"{plan.emulator_url}/_config/webhooks/billing",
        data={"url": f"{plan.webhook_url}/api/stripe/webhook", "secret": plan.chosen["STRIPE_WEBHOOK_SECRET"]},
        timeout=10,
    )
    response.raise_for_status()


def load_demo_if_empty(plan: Plan) -> bool:
    from billing_cli.demo import load_demo_data
    from billing_cli.main import default_actor
    from billing_core.bootstrap import build_services

    chosen: dict[str, Any] = dict(plan.chosen)
    settings = Settings(**chosen)
    built = build_services(settings)
    try:
        return load_demo_data(built, actor=default_actor())
    finally:
        built.close()


def local_mcp_token(plan: Plan) -> str:
    """The local operator's MCP token (read, refund, approve): kept in local-secrets.json and made again only
    when it was revoked or expired, so a second run does not pile up tokens."""
    from billing_cli.main import default_actor
    from billing_core.bootstrap import build_services
    from billing_core.services.api_tokens import ApiTokenService

    chosen: dict[str, Any] = dict(plan.chosen)
    built = build_services(Settings(**chosen))
    try:
        tokens = ApiTokenService(built.ctx)
        known = local_secrets()
        if known.get("mcp_token") and tokens.verify(known["mcp_token"]) is not None:
            return known["mcp_token"]
        token, _ = tokens.create(name="billing run (local operator)", scopes=LOCAL_SCOPES, actor=default_actor())
        write_private(SECRETS_FILE, {**known, "mcp_token": token})
        return token
    finally:
        built.close()


def claude_desktop_snippet(plan: Plan) -> dict[str, Any]:
    """Claude Desktop's config for the stdio server on this data (it starts `billing mcp` itself)."""
    env = {name: value for name, value in plan.chosen.items() if not name.startswith("BILLING_TEST_CHECKOUT")}
    database = plan.settings.database_url
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        database = f"sqlite:///{Path(database.removeprefix('sqlite:///')).resolve()}"
    env.update(DATABASE_URL=database, BILLING_MCP_SCOPES=LOCAL_SCOPES)
    billing = Path(sys.executable).with_name("billing")
    return {"mcpServers": {"billing": {"command": str(billing), "args": ["mcp", "--transport", "stdio"], "env": env}}}


def describe(plan: Plan, supervisor: Supervisor) -> dict[str, Any]:
    children = {
        c.spec.name: {"pid": c.pid, "restarts": c.restarts, "log": str(c.log_path)} for c in supervisor.children
    }
    return {
        "pid": os.getpid(),
        "mode": "emulator" if plan.emulator else "stripe",
        "database_url": plan.settings.database_url,
        "webhooks": {
            "url": plan.webhook_url,
            "stripe": f"{plan.webhook_url}/api/stripe/webhook",
            "retell": f"{plan.webhook_url}/api/retell/webhook",
        },
        "mcp": {"url": plan.mcp_url, "token": plan.mcp_token, "scopes": LOCAL_SCOPES},
        "stripe_emulator": {"url": plan.emulator_url} if plan.emulator else None,
        "mail": {"smtp_url": plan.chosen["SMTP_URL"], "directory": str((VAR_DIR / "mail").resolve())}
        if plan.smtp_port is not None
        else None,
        "test_checkout_url": plan.chosen.get("BILLING_TEST_CHECKOUT_URL"),
        "children": children,
        "settings": plan.chosen,
    }


def print_summary(plan: Plan, echo: Any) -> None:
    lines = [
        "",
        "billing is running"
        + (" in emulator mode (localstripe, no real money)" if plan.emulator else " against Stripe"),
        f"  MCP over HTTP    {plan.mcp_url}",
        f"  MCP token        {plan.mcp_token}  ({LOCAL_SCOPES})",
        f"  Stripe webhook   {plan.webhook_url}/api/stripe/webhook"
        + ("  (registered with the emulator)" if plan.emulator else "  (add it in the Stripe dashboard)"),
        f"  Retell webhook   {plan.webhook_url}/api/retell/webhook",
        f"  health, metrics  {plan.webhook_url}/readyz  {plan.webhook_url}/metrics",
    ]
    if "BILLING_SELLER_NAME" in plan.chosen:
        seller = plan.chosen["BILLING_SELLER_NAME"]
        lines.append(f"  seller           {seller} (a demo; set BILLING_SELLER_* for yours)")
    if plan.emulator:
        lines.append(f"  Stripe emulator  {plan.emulator_url}")
        lines.append("  top-up links     `billing topups checkout --company 1 --amount 50.00` opens the test page")
    if plan.smtp_port is not None:
        lines.append(f"  mail             every mail is written to {(VAR_DIR / 'mail').resolve()}/*.eml")
    elif plan.settings.smtp_url:
        lines.append("  mail             sent through SMTP_URL")
    else:
        lines.append("  mail             waits in the outbox (set SMTP_URL to send it)")
    lines += [
        "  simulate traffic `billing simulate --calls 200 --rate 20`",
        f"  state            {RUN_FILE.resolve()}  logs {(VAR_DIR / 'logs').resolve()}",
        "Claude Desktop (claude_desktop_config.json), the stdio server on this data:",
        json.dumps(claude_desktop_snippet(plan), indent=2),
        "Ctrl-C stops everything; the data stays for the next run.",
    ]
    for line in lines:
        echo(line)


@click.command(name="run")
@click.option("--mcp-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--webhook-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the local servers listen.")
def run_command(mcp_port: int, webhook_port: int, host: str) -> None:
    """Everything for local use: migrate, demo data when empty, webhooks + worker, MCP over HTTP, and without
    STRIPE_SECRET the Stripe emulator and a mail sink."""
    settings = Settings()
    for name, port in (("--webhook-port", webhook_port), ("--mcp-port", mcp_port)):
        if not port_free(port):
            raise click.UsageError(f"port {port} ({name}) is taken; is another `billing run` running?")
    try:  # Ctrl-C before the children exist: nothing to stop, no traceback
        from billing_cli.db import ensure_sqlite_folder
        from billing_core.db import migrate

        ensure_sqlite_folder(settings.database_url)
        migrate.upgrade(settings.database_url)
        click.echo("database migrated")
        plan = make_plan(settings, host=host, webhook_port=webhook_port, mcp_port=mcp_port)
    except KeyboardInterrupt:
        click.echo("[billing run] interrupted before anything was started", err=True)
        sys.exit(130)
    sys.exit(run_system(plan))
