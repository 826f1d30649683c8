"""The MCP server over streamable HTTP: ``/mcp`` behind bearer tokens, ``/healthz``, and the RFC 9728 metadata.

Tokens are the ones ``billing tokens create`` makes (stored hashed). A missing or bad token gets 401 with the
protected-resource metadata (the SDK's ``token_verifier`` and ``AuthSettings``); a tool call outside the
token's scopes gets 403 ``insufficient_scope`` naming the scope it needs, before the server parses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_core.bootstrap import Services
from billing_core.services.tool_calls import ToolCallStore
from mcp_server.audit import AuditWriter
from mcp_server.caller import Caller, caller_from_token_claims
from mcp_server.server import build_server
from mcp_server.settings import McpSettings
from mcp_server.token_verifier import DatabaseTokenVerifier
from mcp_server.tool_definitions import tool_scopes

MAX_BODY = 1_000_000


class ScopeChallenge:
    """403 ``insufficient_scope`` for a tools/call the bearer token's scopes do not allow (RFC 6750 §3.1)."""

    def __init__(
        self, app: ASGIApp, verifier: DatabaseTokenVerifier, calls: ToolCallStore, services: Services, metadata: str
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.calls = calls
        self.services = services
        self.metadata = metadata
        self.scopes = tool_scopes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/mcp"):
            await self.app(scope, receive, send)
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not auth.lower().startswith("bearer "):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        replay = _replaying(body, more, receive)
        access = await self.verifier.verify_token(auth[7:].strip())
        needed = self._needed_scope(body) if access is not None and not more else None
        if access is not None and needed is not None:
            caller = caller_from_token_claims(access.client_id, access.scopes, access.claims)
            if not caller.allows(needed[1]):
                await self._refuse(caller, needed, scope, receive, send)
                return
        await self.app(scope, replay, send)

    def _needed_scope(self, body: bytes) -> tuple[str, str] | None:
        try:
            message = json.loads(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or name not in self.scopes:
            return None
        return name, self.scopes[name]

    async def _refuse(
        self, caller: Caller, needed: tuple[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        tool, required = needed
        message = f"insufficient_scope: needs {required}"
        row = self.calls.audit_row(actor=caller.name, tool=tool, outcome="refused", arguments={}, message=message)
        await self.services.call(self.calls.record_rows, [row])
        response = JSONResponse(
            {
                "error": "insufficient_scope",
                "error_description": f"{tool} needs the scope {required}; this token has {caller.scope_text}",
                "scope": required,
            },
            status_code=403,
            headers={
                "WWW-Authenticate": (
                    f'Bearer error="insufficient_scope", scope="{required}", resource_metadata="{self.metadata}"'
                )
            },
        )
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body up to MAX_BODY bytes, and whether more remained (then it is passed on unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > MAX_BODY:
            return b"".join(chunks), True


def _replaying(body: bytes, more: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def build_http_app(
    services: Services,
    *,
    settings: McpSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> Starlette:
    settings = settings or McpSettings()
    public_url = settings.public_url or f"http://{host}:{port}/mcp"
    calls = ToolCallStore(services.ctx)
    audit = AuditWriter(services, calls)
    verifier = DatabaseTokenVerifier(services, audit)
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(settings.issuer_url or public_url.rsplit("/mcp", 1)[0] + "/"),
        resource_server_url=AnyHttpUrl(public_url),
        required_scopes=None,
    )
    server = build_server(
        services,
        settings=settings,
        local_caller=Caller("anonymous", frozenset()),
        token_verifier=verifier,
        auth=auth,
        audit=audit,
    )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.host_list,
        allowed_origins=settings.origin_list,
    )
    mcp_app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    app = Starlette(routes=[Route("/healthz", healthz), Mount("/", app=mcp_app)], lifespan=lifespan)
    metadata = build_resource_metadata_url(AnyHttpUrl(public_url))
    app.add_middleware(
        ScopeChallenge,
        verifier=verifier,
        calls=calls,
        services=services,
        metadata=str(metadata),
    )
    return app
