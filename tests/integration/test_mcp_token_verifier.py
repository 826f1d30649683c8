"""Bearer tokens over HTTP are checked against the database on every request (mcp_server.token_verifier), on
both databases: a revocation or an expiry takes effect on the next request, concurrent requests share a
lookup (in the audit writer's transactions), and a request verified twice is looked up once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import anyio
import pytest
from mcp.server.auth.provider import AccessToken
from sqlalchemy import Engine, event

from billing_core.bootstrap import Services
from billing_core.services.api_tokens import ApiTokenService
from billing_core.services.tool_calls import ToolCallStore
from mcp_server.audit import AuditWriter
from mcp_server.token_verifier import DatabaseTokenVerifier
from tests.conftest import Clock
from tests.integration.helpers import new_company

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def token_lookups() -> Iterator[list[str]]:
    """The statements that read api_tokens, on every engine (the event loop's aiomysql one too)."""
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM api_tokens" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    yield seen
    event.remove(Engine, "before_cursor_execute", before)


def verifier_of(services: Services) -> DatabaseTokenVerifier:
    return DatabaseTokenVerifier(services, AuditWriter(services, ToolCallStore(services.ctx)))


async def request(verifier: DatabaseTokenVerifier, token: str) -> AccessToken | None:
    """Verify ``token`` in a task of its own, as a request to the server is."""
    answers: list[AccessToken | None] = []

    async def one() -> None:
        answers.append(await verifier.verify_token(token))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
    return answers[0]


async def test_a_revoked_token_is_refused_on_the_very_next_request(services: Services) -> None:
    tokens = ApiTokenService(services.ctx)
    token, view = tokens.create(name="temp", scopes="billing:read", actor="test")
    verifier = verifier_of(services)
    assert await request(verifier, token) is not None and tokens.verify(token) == view
    tokens.revoke(view.id, actor="test")
    assert await request(verifier, token) is None and tokens.verify(token) is None


async def test_an_expired_token_is_refused_from_its_expiry_on(services: Services, clock: Clock) -> None:
    token, _ = ApiTokenService(services.ctx).create(
        name="short", scopes="billing:read", actor="test", expires_at=clock() + timedelta(hours=1)
    )
    verifier = verifier_of(services)
    assert await request(verifier, token) is not None
    clock.advance(hours=2)
    assert await request(verifier, token) is None


async def test_concurrent_requests_each_get_their_own_token_from_shared_lookups(
    services: Services, token_lookups: list[str]
) -> None:
    tokens = ApiTokenService(services.ctx)
    company_id = new_company(services).id
    reader, _ = tokens.create(name="reader", scopes="billing:read", actor="test")
    bound, _ = tokens.create(name="bound", scopes="billing:read billing:refund", actor="test", company_id=company_id)
    revoked, revoked_view = tokens.create(name="gone", scopes="billing:admin", actor="test")
    tokens.revoke(revoked_view.id, actor="test")
    verifier = verifier_of(services)
    asked = [reader, bound, revoked, "bk_unknown", "not-a-token"] * 4
    answers: dict[int, object] = {}

    async def one(number: int, token: str) -> None:
        answers[number] = await verifier.verify_token(token)

    token_lookups.clear()
    async with anyio.create_task_group() as tg:
        for number, token in enumerate(asked):
            tg.start_soon(one, number, token)

    names = [getattr(answers[n], "client_id", None) for n in range(len(asked))]
    assert names == ["token:reader", "token:bound", None, None, None] * 4
    bound_claims = [getattr(answers[n], "claims", None) for n, token in enumerate(asked) if token == bound]
    assert all(claims and claims["company_id"] == company_id for claims in bound_claims)
    assert 1 <= len(token_lookups) < len(asked) // 2


async def test_a_request_verified_twice_is_looked_up_once(services: Services, token_lookups: list[str]) -> None:
    token, _ = ApiTokenService(services.ctx).create(name="twice", scopes="billing:read", actor="test")
    verifier = verifier_of(services)
    token_lookups.clear()
    first = await verifier.verify_token(token)  # the scope check's
    second = await verifier.verify_token(token)  # the SDK's, later in the same request
    assert first is second is not None
    assert len(token_lookups) == 1
