"""The read side's answers and filters: plain, frozen pydantic models, without the SQL that fills them.

:mod:`billing_core.queries` runs the reads and builds these. They live apart so that whatever needs only
their shape starts without SQLAlchemy, the tables or the services: the MCP server's tool schemas
(``tools/list``), the CLI's options and ``--json`` output.
"""
