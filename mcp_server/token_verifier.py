"""Bearer tokens checked against the database on every request, so a revoked or expired token is refused at
once, on every replica (no cache that could keep a revoked token working).

What keeps that cheap under load: the lookups of concurrent requests share one statement (a request that
arrives while a lookup is under way waits for it to end and goes into the next, as the audit rows do, see
:mod:`mcp_server.audit`), and a request verified twice (by :class:`~mcp_server.http.ScopeChallenge`, then by
the SDK's authentication middleware) is looked up once: the answer is kept in the request's context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import anyio
from mcp.server.auth.provider import AccessToken, TokenVerifier

from billing_core.services.api_tokens import ApiTokenService, ApiTokenView

if TYPE_CHECKING:
    from billing_core.bootstrap import Services

MAX_BATCH = 256

# (token, answer) of the request in whose context it was set: each request runs in a task of its own
_verified: ContextVar[tuple[str, AccessToken | None] | None] = ContextVar("billing_mcp_verified", default=None)


class _Lookup:
    __slots__ = ("token", "view", "error", "done", "wake")

    def __init__(self, token: str) -> None:
        self.token = token
        self.view: ApiTokenView | None = None
        self.error: Exception | None = None
        self.done = False
        self.wake = anyio.Event()


class DatabaseTokenVerifier(TokenVerifier):
    def __init__(self, services: Services) -> None:
        self._services = services
        self._tokens = ApiTokenService(services.ctx)
        self._queue: list[_Lookup] = []
        self._leading = False

    async def verify_token(self, token: str) -> AccessToken | None:
        seen = _verified.get()
        if seen is not None and seen[0] == token:
            return seen[1]
        view = await self._look_up(token)
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

    async def _look_up(self, token: str) -> ApiTokenView | None:
        lookup = _Lookup(token)
        # shielded: a request that goes away must not leave the lookups queued behind its own without one
        with anyio.CancelScope(shield=True):
            self._queue.append(lookup)
            if self._leading:
                await lookup.wake.wait()  # set when our lookup is done, or when we are to run the next one
            if not lookup.done:
                self._leading = True
                await self._run_one_batch()
        if lookup.error is not None:
            raise lookup.error
        return lookup.view

    async def _run_one_batch(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            found = await self._services.call(self._tokens.verify_many, [lookup.token for lookup in batch])
            for lookup in batch:
                lookup.view = found.get(lookup.token)
        except Exception as error:  # the database is down: every request of the batch fails as a lone one would
            for lookup in batch:
                lookup.error = error
        finally:
            for lookup in batch:
                lookup.done = True
                lookup.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # its request runs the next lookup
            else:
                self._leading = False
