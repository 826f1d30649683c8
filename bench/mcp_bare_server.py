"""The baseline of the MCP benchmarks: a bare MCPServer with one tool returning a constant.

``python -m bench.mcp_bare_server`` serves stdio; ``--http PORT`` serves streamable HTTP at /mcp.
"""

from __future__ import annotations

import sys

from mcp.server import MCPServer


def build() -> MCPServer:
    server = MCPServer("bare", log_level="WARNING")

    @server.tool()
    def get_balance(company_id: int) -> dict[str, int | str]:
        """A constant balance."""
        return {"company_id": company_id, "cents": 4200, "currency": "EUR"}

    return server


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        import uvicorn

        server = build()
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        build().run("stdio")
