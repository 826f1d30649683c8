"""The read side: typed, paged, indexed queries for everything an operator, a report or an assistant reads.

After cosmicpython's ``views.py``: reads go through this package, not through the write services.
:class:`Queries` (``services.queries``) runs each read in one read-only transaction; the functions of the
modules below take a connection, so a caller can also combine several reads in one snapshot. Every answer
is a frozen pydantic model of :mod:`billing_core.read_models` (kept apart from the SQL, so the models load
without SQLAlchemy), and the CLI's ``--json`` and the MCP tools' output schemas come from the same types.
Money is :class:`MoneyView`: integer minor units, currency, and the text formatted for the company's
locale. Lists are :class:`Page` objects with an opaque keyset cursor and ``has_more``.
"""

from billing_core.queries.facade import Queries
from billing_core.read_models.base import MAX_LIMIT, MoneyView, Page, ReadModel

__all__ = ["MAX_LIMIT", "MoneyView", "Page", "Queries", "ReadModel"]
