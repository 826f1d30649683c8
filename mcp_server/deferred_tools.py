"""Tools listed from the schema cache and built on their first call.

Building the 24 tools (their argument models, input and output JSON schemas, and the read models behind the
output schemas) is most of what ``billing mcp`` would do before it can answer tools/list. A
:class:`DeferredTool` answers tools/list from :mod:`mcp_server.schema_cache` and, on its first call, builds
the tool exactly as ``MCPServer.add_tool`` would (:meth:`ToolSpec.build`) and hands every call to it: the
same argument validation, errors, resolvers and structured output. tests/unit/test_mcp_schema_cache.py
pins the parts of the SDK this relies on: ``Tool.run``'s signature and tools/list reading the Tool's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import Tool as ListedTool
from pydantic import PrivateAttr

from mcp_server.schema_cache import CachedTools, load
from mcp_server.tool_specs import ToolSpecs

if TYPE_CHECKING:
    from mcp.server.mcpserver.context import Context

    from mcp_server.app import BillingApp


class DeferredTool(Tool):
    """A tool as tools/list shows it; the real one is built when it is first called."""

    _build: Callable[[], Tool] = PrivateAttr()
    _built: Tool | None = PrivateAttr(default=None)

    @classmethod
    def listed(cls, listing: ListedTool, build: Callable[[], Tool]) -> DeferredTool:
        tool = cls(
            fn=build,  # nothing calls a Tool's fn but its own run(), which this class replaces
            name=listing.name,
            title=listing.title,
            description=listing.description or "",
            parameters=listing.input_schema,
            # The SDK's hand-built metadata: a published output schema and no model (run() never reaches it).
            fn_metadata=FuncMetadata(arg_model=ArgModelBase, output_schema=listing.output_schema),
            is_async=True,
            annotations=listing.annotations,
            icons=listing.icons,
            meta=listing.meta,
        )
        tool._build = build
        return tool

    @property
    def is_built(self) -> bool:
        return self._built is not None

    def built(self) -> Tool:
        if self._built is None:  # called in the event loop only: no other call can get in between
            self._built = self._build()
        return self._built

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> Any:
        try:
            tool = self.built()
        except Exception as exc:  # a broken definition: a crash, reported as Tool.run reports one
            raise UnexpectedToolError(f"Error executing tool {self.name}") from exc
        return await tool.run(arguments, context, convert_result=convert_result)


class _Definitions:
    """The tool definitions of one server, made on the first call of any of its tools."""

    def __init__(self, app: BillingApp) -> None:
        self.app = app
        self._specs: ToolSpecs | None = None

    def builder(self, name: str) -> Callable[[], Tool]:
        return lambda: self.specs().specs[name].build()

    def specs(self) -> ToolSpecs:
        if self._specs is None:
            from mcp_server.tool_definitions import define_tools  # the read models, operations, reports

            self._specs = define_tools(self.app)
        return self._specs


def server_tools(app: BillingApp) -> tuple[list[Tool], dict[str, str]]:
    """The server's tools and the scope each needs: deferred ones listed from the schema cache, or, when the
    cache was generated with other versions of the SDK or pydantic (whose schemas may differ), built now."""
    cached: CachedTools | None = load()
    if cached is None:
        from mcp_server.tool_definitions import define_tools, tool_scopes

        return define_tools(app).build_all(), tool_scopes()
    definitions = _Definitions(app)
    tools: list[Tool] = [DeferredTool.listed(t, definitions.builder(t.name)) for t in cached.tools]
    return tools, cached.scopes
