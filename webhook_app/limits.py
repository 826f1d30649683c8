"""Bounds on request headers: a 431 before any endpoint sees a request with too many or too large headers.

uvicorn bounds the header block only when it runs h11 (``h11_max_incomplete_event_size``); httptools,
which it prefers, has no such option. This middleware applies the same limits whatever the parser.
Webhook senders send a dozen short headers; the limits leave ample room for proxies.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024  # all names and values together
MAX_HEADER_VALUE_BYTES = 8 * 1024


class HeaderLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_headers: int = MAX_HEADERS,
        max_bytes: int = MAX_HEADER_BYTES,
        max_value_bytes: int = MAX_HEADER_VALUE_BYTES,
    ) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes

    def _too_large(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if len(headers) > self.max_headers:
            return True
        total = 0
        for name, value in headers:
            if len(value) > self.max_value_bytes:
                return True
            total += len(name) + len(value)
        return total > self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._too_large(scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        body = b'{"error":"request header fields too large"}'
        await send(
            {
                "type": "http.response.start",
                "status": 431,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
