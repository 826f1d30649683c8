"""What tools/list answers, generated from the tools and shipped beside them in ``tool_schemas.json``.

The server lists its tools from this file (:mod:`mcp_server.deferred_tools`) instead of building them at
start. After changing a tool, its arguments, its answer or a read model it returns, regenerate it:

    python -m mcp_server.schema_cache

tests/unit/test_mcp_schema_cache.py fails while the file differs from what the tools generate. The file
records the versions of the SDK and pydantic that generated it, since they shape the schemas: under others
the server builds its tools at start instead (correct, only slower).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pydantic
from mcp.types import Tool as ListedTool

CACHE_FILE = Path(__file__).with_name("tool_schemas.json")


@dataclass(frozen=True, slots=True)
class CachedTools:
    tools: list[ListedTool]  # in the order of tools/list
    scopes: dict[str, str]  # the scope a caller needs to see each tool


def library_versions() -> dict[str, str]:
    return {"mcp": version("mcp"), "pydantic": pydantic.VERSION}


def load(path: Path = CACHE_FILE) -> CachedTools | None:
    """The cached tools, or None when the file is missing or was generated with other library versions."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if document.get("generated_with") != library_versions():
        return None
    entries = document["tools"]
    return CachedTools(
        tools=[ListedTool.model_validate(entry["tool"]) for entry in entries],
        scopes={entry["tool"]["name"]: entry["scope"] for entry in entries},
    )


def generate() -> dict[str, Any]:
    """The document, from the tools themselves: built as the SDK builds them, listed as it lists them."""
    import anyio
    from mcp.server import MCPServer

    from mcp_server.app import BillingApp
    from mcp_server.caller import Caller
    from mcp_server.services_on_demand import ServicesOnDemand
    from mcp_server.settings import McpSettings
    from mcp_server.tool_definitions import define_tools, tool_scopes

    def no_services() -> Any:
        raise RuntimeError("generating the schemas calls no tool")

    services = ServicesOnDemand(no_services)
    app = BillingApp(services, McpSettings.model_construct(), Caller("schemas", frozenset()))
    server: MCPServer[Any] = MCPServer("schemas", tools=define_tools(app).build_all())
    listed = anyio.run(server.list_tools)
    scopes = tool_scopes()
    return {
        "generated_with": library_versions(),
        "tools": [
            {"scope": scopes[tool.name], "tool": tool.model_dump(mode="json", by_alias=True, exclude_none=True)}
            for tool in listed
        ],
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    document = generate()
    CACHE_FILE.write_text(render(document), encoding="utf-8")
    print(f"wrote {CACHE_FILE} ({len(document['tools'])} tools)", file=sys.stderr)


if __name__ == "__main__":
    main()
