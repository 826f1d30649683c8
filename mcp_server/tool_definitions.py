"""Every tool of the server, declared but not built, and the scope each needs.

Importing this loads the read models, the operations and the reports behind the tools: ``billing mcp`` does
so on its first tool call (:mod:`mcp_server.deferred_tools`), not to answer tools/list.
"""

from __future__ import annotations

from mcp_server.app import BillingApp
from mcp_server.approval_tools import register_approval_tools
from mcp_server.caller import APPROVE, READ
from mcp_server.operations import OPERATIONS
from mcp_server.read_tools import READ_TOOLS, register_read_tools
from mcp_server.tool_specs import ToolSpecs
from mcp_server.write_tools import register_write_tools

READ_TOOLS_SCOPE = {"get_audit_log": READ, "list_pending_approvals": APPROVE, "decide_approval": APPROVE}


def tool_scopes() -> dict[str, str]:
    """The scope each tool needs (tools/list shows a caller only the tools its scopes allow)."""
    scopes = dict.fromkeys(READ_TOOLS, READ) | READ_TOOLS_SCOPE
    scopes.update({name: op.scope for name, op in OPERATIONS.items()})
    return scopes


def define_tools(app: BillingApp) -> ToolSpecs:
    tools = ToolSpecs()
    register_read_tools(tools, app)
    register_write_tools(tools, app)
    register_approval_tools(tools, app)
    return tools
