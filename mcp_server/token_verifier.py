"""Bearer tokens checked against the database on every request, so a revoked or expired token is refused at
once, on every replica (no cache that could keep a revoked token working).

What keeps that cheap under load: a lookup rides in the next transaction of the audit writer (see
:mod:`mcp_server.audit`), beside the audit rows and reads of concurrent calls, and the lookups of all the
requests in it are one statement; a request verified twice (by :class:`~mcp_server.http.ScopeChallenge`,
then by the SDK's authentication middleware) is looked up once: the answer is kept in the request's context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from mcp.server.auth.provider import AccessToken, TokenVerifier

from billing_core.services.api_tokens import ApiTokenView, active_tokens
from mcp_server.shared_read import SharedRead

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from billing_core.bootstrap import Services
    from mcp_server.audit import AuditWriter

# (token, answer) of the request in whose context it was set: each request runs in a task of its own
_verified: ContextVar[tuple[str, AccessToken | None] | None] = ContextVar("billing_mcp_verified", default=None)


class DatabaseTokenVerifier(TokenVerifier):
    def __init__(self, services: Services, audit: AuditWriter) -> None:
        clock = services.ctx.clock

        def fetch(conn: Connection, tokens: list[str]) -> dict[str, ApiTokenView | None]:
            return active_tokens(conn, tokens, clock())

        self._audit = audit
        self._tokens: SharedRead[str, ApiTokenView | None] = SharedRead(fetch)

    async def verify_token(self, token: str) -> AccessToken | None:
        seen = _verified.get()
        if seen is not None and seen[0] == token:
            return seen[1]
        view = await self._audit.look_up(self._tokens, token)
        access = None
        if view is not None:
            access = AccessToken(
                token=token,
                client_id=f"token:{view.name}",
                scopes=list(view.scopes),
                expires_at=int(view.expires_at.timestamp()) if view.expires_at else None,
                claims={"company_id": view.company_id, "token_id": view.id},
            )
        _verified.set((token, access))
        return access
