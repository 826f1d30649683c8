"""The tools' definitions, kept apart from building them.

The tool modules declare their tools here the way they would on an ``MCPServer`` (``@tools.tool(...)``,
``tools.add_tool(...)``); :meth:`ToolSpec.build` makes the SDK's ``Tool`` with the very call
``MCPServer.add_tool`` makes (``Tool.from_function``). Declaring costs nothing; building one (its argument
model, its JSON schemas) is what costs, so the server builds each tool on its first call
(:mod:`mcp_server.deferred_tools`) and lists them from :mod:`mcp_server.schema_cache`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ToolSpec:
    fn: Callable[..., Any]
    options: dict[str, Any]  # Tool.from_function's keyword arguments

    def build(self) -> Tool:
        return Tool.from_function(self.fn, **self.options)


class ToolSpecs:
    """Tool definitions by name, in the order they were declared (the order of tools/list)."""

    def __init__(self) -> None:
        self.specs: dict[str, ToolSpec] = {}

    def add_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        structured_output: bool | None = None,
    ) -> None:
        if name in self.specs:
            raise ValueError(f"tool {name} is declared twice")
        options = {"name": name, "description": description, "annotations": annotations}
        self.specs[name] = ToolSpec(fn, options | {"structured_output": structured_output})

    def tool(
        self, *, name: str, annotations: ToolAnnotations | None = None, structured_output: bool | None = None
    ) -> Callable[[F], F]:
        def declare(fn: F) -> F:
            self.add_tool(fn, name=name, annotations=annotations, structured_output=structured_output)
            return fn

        return declare

    def build_all(self) -> list[Tool]:
        return [spec.build() for spec in self.specs.values()]
