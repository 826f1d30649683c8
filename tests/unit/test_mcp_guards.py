"""The MCP server's pure parts: the per-caller token bucket, capped text, scopes and settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from billing_core.errors import InvalidInput
from billing_core.services.api_tokens import parse_scopes
from billing_core.services.tool_calls import arguments_hash
from mcp_server.caller import Caller
from mcp_server.guards import RateLimiter
from mcp_server.settings import McpSettings
from mcp_server.text import capped


def test_rate_limiter_allows_a_burst_then_refills_per_caller() -> None:
    limiter = RateLimiter(per_minute=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(20.0)
    assert limiter.take("b", now=0.0) == 0.0  # another caller has its own budget
    assert limiter.take("a", now=20.0) == 0.0  # one call back after 60/3 seconds


def test_capped_text_has_no_control_characters_and_a_bounded_length() -> None:
    assert capped("Praxis\nWeber\x1b[31m", 100) == "Praxis Weber [31m"
    assert capped("x" * 300, 10) == "x" * 9 + "…"
    assert capped(None) == ""


def test_admin_scope_allows_everything_and_bound_callers_see_only_their_company() -> None:
    admin = Caller("root", frozenset({"billing:admin"}))
    assert admin.allows("billing:refund") and admin.company(5) == 5
    bound = Caller("bot", frozenset({"billing:read"}), company_id=7)
    assert bound.company(None) == 7 and bound.company(7) == 7
    with pytest.raises(Exception, match="company 8 does not exist"):
        bound.company(8)
    with pytest.raises(Exception, match="insufficient_scope.*billing:refund"):
        bound.require("billing:refund")


def test_unknown_scopes_and_confirmation_paths_are_refused() -> None:
    assert parse_scopes("billing:refund, billing:read") == ("billing:read", "billing:refund")
    with pytest.raises(InvalidInput, match="billing:refnud"):
        parse_scopes("billing:refnud")
    with pytest.raises(ValidationError):
        McpSettings(_env_file=None, confirmation="telepathy")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        McpSettings(_env_file=None, scopes="root")  # type: ignore[call-arg]
    assert McpSettings.model_fields["scopes"].default == "billing:read"  # read-only unless configured otherwise


def test_arguments_hash_depends_on_every_argument_but_not_their_order() -> None:
    one = arguments_hash("refund_call_charge", {"call_id": "c1", "amount_cents": 100})
    assert one == arguments_hash("refund_call_charge", {"amount_cents": 100, "call_id": "c1"})
    assert one != arguments_hash("refund_call_charge", {"call_id": "c1", "amount_cents": 101})
    assert one != arguments_hash("refund_topup", {"call_id": "c1", "amount_cents": 100})
