"""Connecting the SDK's in-memory MCP client to a server built over the test's services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from mcp.types import ElicitResult

from billing_core.bootstrap import Services
from mcp_server.caller import Caller
from mcp_server.server import build_server
from mcp_server.settings import McpSettings

ALL = frozenset({"billing:admin"})


def settings(**overrides: Any) -> McpSettings:
    """The defaults plus ``overrides``, whatever BILLING_MCP_* the shell running the tests holds."""
    defaults = {name: field.default for name, field in McpSettings.model_fields.items()}
    return McpSettings(_env_file=None, **{**defaults, **overrides})  # type: ignore[call-arg]


Answer = Callable[[str], ElicitResult]


def accept(_message: str) -> ElicitResult:
    return ElicitResult(action="accept", content={"confirm": True})


def decline(_message: str) -> ElicitResult:
    return ElicitResult(action="decline")


@asynccontextmanager
async def connect(
    services: Services,
    mode: str,
    *,
    caller: Caller | None = None,
    answer: Answer | None = None,
    asked: list[str] | None = None,
    **config: Any,
) -> AsyncIterator[Client]:
    server = build_server(services, settings=settings(**config), local_caller=caller or Caller("alice", ALL))
    callback = None
    if answer is not None:

        async def callback(_ctx: Any, params: Any) -> ElicitResult:
            if asked is not None:
                asked.append(params.message)
            return answer(params.message)

    async with Client(server, mode=mode, elicitation_callback=callback) as client:
        yield client


async def call(client: Client, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error_of(client: Client, tool: str, /, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)
