"""The tools' schema cache (mcp_server/tool_schemas.json): what the tools generate, listed as the SDK lists
built tools, ignored when other library versions generated it; and the parts of the SDK the deferred tools
rely on, pinned so that an SDK update that changes them fails here instead of silently."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.tools import Tool, ToolManager

from mcp_server import schema_cache
from mcp_server.app import BillingApp
from mcp_server.caller import Caller
from mcp_server.deferred_tools import DeferredTool, server_tools
from mcp_server.server import build_server
from mcp_server.services_on_demand import ServicesOnDemand
from mcp_server.settings import McpSettings
from mcp_server.tool_definitions import define_tools, tool_scopes

ADMIN = Caller("root", frozenset({"billing:admin"}))


def never_built() -> Any:
    raise AssertionError("listing tools must not build the services")


def app() -> BillingApp:
    return BillingApp(ServicesOnDemand(never_built), McpSettings.model_construct(), ADMIN)


def listed(server: MCPServer[Any]) -> list[dict[str, Any]]:
    tools = anyio.run(server.list_tools)
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


def parameters(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_shipped_cache_is_what_the_tools_generate() -> None:
    expected = schema_cache.render(schema_cache.generate())
    assert schema_cache.CACHE_FILE.read_text(encoding="utf-8") == expected, (
        "the tools changed: regenerate the cache with `python -m mcp_server.schema_cache`"
    )


def test_a_server_lists_from_the_cache_exactly_what_it_lists_with_every_tool_built() -> None:
    server = build_server(ServicesOnDemand(never_built), local_caller=ADMIN)
    built: MCPServer[Any] = MCPServer("built", tools=define_tools(app()).build_all())
    tools, scopes = server_tools(app())
    assert all(isinstance(t, DeferredTool) and not t.is_built for t in tools)  # the cache was used
    assert listed(server) == listed(built)
    assert len(tools) == 24 and scopes == tool_scopes()


def test_a_cache_generated_with_other_library_versions_or_missing_is_not_used(tmp_path: Path) -> None:
    document = json.loads(schema_cache.CACHE_FILE.read_text(encoding="utf-8"))
    assert schema_cache.load(schema_cache.CACHE_FILE) is not None
    for versions in ({"mcp": "2.2.0", "pydantic": document["generated_with"]["pydantic"]}, {"mcp": "2.3.0"}):
        stale = tmp_path / "stale.json"
        stale.write_text(json.dumps({**document, "generated_with": versions}), encoding="utf-8")
        assert schema_cache.load(stale) is None
    assert schema_cache.load(tmp_path / "missing.json") is None


def test_a_deferred_tool_builds_its_tool_once_from_its_definition() -> None:
    tools, _ = server_tools(app())
    tool = next(t for t in tools if t.name == "get_balance")
    assert isinstance(tool, DeferredTool)
    real = tool.built()
    assert tool.is_built and tool.built() is real and type(real) is Tool
    assert (real.parameters, real.output_schema) == (tool.parameters, tool.output_schema)
    assert not any(isinstance(t, DeferredTool) and t.is_built for t in tools if t is not tool)


def test_the_sdk_still_calls_tools_through_run_and_lists_the_fields_a_deferred_tool_sets() -> None:
    # DeferredTool replaces Tool.run (the one method ToolManager.call_tool calls) and fills the fields
    # MCPServer.list_tools reads; a change to either in the SDK must be looked at before the cache is trusted.
    assert parameters(DeferredTool.run) == parameters(Tool.run)
    assert "tool.run(arguments, context, convert_result=convert_result)" in inspect.getsource(ToolManager.call_tool)
    list_tools = inspect.getsource(MCPServer.list_tools)
    for field in ("name", "title", "description", "parameters", "output_schema", "annotations", "icons", "meta"):
        assert f"info.{field}" in list_tools, field
    assert set(Tool.model_fields) == {
        "fn",
        "name",
        "title",
        "description",
        "parameters",
        "fn_metadata",
        "is_async",
        "context_kwarg",
        "resolved_params",
        "resolver_plans",
        "annotations",
        "icons",
        "meta",
    }
