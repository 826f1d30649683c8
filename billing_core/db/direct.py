"""Hot-path statements run straight on the driver's cursor, compiled once per dialect.

``Connection.execute`` spends about 50 µs of CPU on each statement before and after the driver does its work:
the compiled-cache lookup, an ExecutionContext, the parameter processing, a cursor wrapper and a Result.
A charge runs five statements, so that was as much CPU as the driver's own work (measured in the event
loop on aiomysql). A :class:`DirectStatement` compiles a prebuilt Core statement once per dialect, applies
the column types' bind and result processors itself (``UtcDateTime``, ``ExactDecimal``, ``Boolean``: what
``conn.execute`` would apply) and runs it on a DBAPI cursor of the same connection and transaction.

Errors take the same road as those of ``conn.execute``: a driver error goes through the Connection's own
handling (``Connection._handle_dbapi_exception``: disconnect detection, pool invalidation, the ``handle_error``
events), so it arrives as SQLAlchemy's ``DBAPIError`` with the same ``orig`` and ``connection_invalidated``,
and ``Database._retrying`` and :mod:`billing_core.db.errors` treat it alike. What these statements skip are the
``before/after_cursor_execute`` events and the engine's statement log.

Limits, checked when a statement is compiled: plain bound parameters (no expanding ``IN``, no literal
execution, no escaped names), and no Python-side column defaults (an INSERT or UPDATE gives every value).
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Insert, Select, Update
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


@dataclass(slots=True)
class _Compiled:
    sql: str
    positional: bool
    binds: tuple[tuple[str, Processor], ...]  # (parameter name, bind processor) in the order the SQL takes them
    defaults: Mapping[str, Any]  # literal values the statement binds itself (``status = 'active'``)
    expected: frozenset[str]  # the parameters a caller passes: exactly these, so none is silently dropped
    result_types: tuple[Any, ...]
    result_processors: tuple[Processor, ...] | None = field(default=None)  # known at the first result

    def arguments(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if params.keys() != self.expected:
            raise ValueError(f"parameters {sorted(params)} do not match the statement's {sorted(self.expected)}")
        values = {**self.defaults, **params} if self.defaults else params
        if self.positional:
            return tuple(values[name] if process is None else process(values[name]) for name, process in self.binds)
        return {name: values[name] if process is None else process(values[name]) for name, process in self.binds}


class DirectStatement:
    """A prebuilt SELECT, INSERT or UPDATE run without ``Connection.execute`` (see the module's docstring).

    ``column_keys`` names the columns an INSERT or UPDATE without ``values()`` sets, as the keys of the
    parameters passed to ``conn.execute`` would; an INSERT sets every column but the auto-increment key
    unless it says otherwise. Every call passes exactly the parameters the statement takes.
    """

    def __init__(self, statement: Select[Any] | Insert | Update, *, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        if column_keys is None and isinstance(statement, Insert):
            table = statement.table
            column_keys = [c.key for c in table.columns if c is not table.autoincrement_column]  # type: ignore[attr-defined]
        self._column_keys = list(column_keys) if column_keys is not None else None
        columns = list(statement.selected_columns) if isinstance(statement, Select) else []
        self._row: Any = namedtuple("Row", [column.key for column in columns]) if columns else None  # type: ignore[misc]
        self._result_types = tuple(column.type for column in columns)
        # compiled per dialect instance (each engine has its own; an event loop's engine goes with its loop)
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (a named tuple) or None."""
        rows = self._run(conn, params, fetch=True)
        return rows[0] if rows else None

    def insert(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an INSERT; the new row's auto-increment id."""
        return int(self._run(conn, params, fetch=False))

    def update(self, conn: Connection, params: Mapping[str, Any]) -> None:
        self._run(conn, params, fetch=False)

    def _run(self, conn: Connection, params: Mapping[str, Any], *, fetch: bool) -> Any:
        compiled = self._compiled.get(conn.dialect) or self._compile(conn.dialect)
        arguments = compiled.arguments(params)
        if not conn.in_transaction():
            conn.begin()  # what conn.execute's autobegin does
        cursor = _cursor(conn)
        try:
            cursor.execute(compiled.sql, arguments)
            if fetch:
                rows = cursor.fetchall()
                description = cursor.description
            else:
                last_id = cursor.lastrowid
        except BaseException as error:  # noqa: B036 - every failure is handled as conn.execute handles it
            conn.connection.info.pop(_CURSOR, None)
            # wraps a driver error in SQLAlchemy's, invalidates a lost connection, closes the cursor; raises
            conn._handle_dbapi_exception(error, compiled.sql, arguments, cursor, None)
        if not fetch:
            return last_id
        if compiled.result_processors is None:
            compiled.result_processors = self._result_processors(conn.dialect, compiled, description)
        return [self._make_row(row, compiled.result_processors) for row in rows]

    def _make_row(self, row: Sequence[Any], processors: tuple[Processor, ...]) -> Any:
        assert self._row is not None
        if not any(processors):
            return self._row._make(row)
        return self._row._make(
            value if process is None else process(value) for value, process in zip(row, processors, strict=True)
        )

    @staticmethod
    def _result_processors(dialect: Dialect, compiled: _Compiled, description: Sequence[Any]) -> tuple[Processor, ...]:
        return tuple(
            type_.dialect_impl(dialect).result_processor(dialect, column[1])
            for type_, column in zip(compiled.result_types, description, strict=True)
        )

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self._column_keys)
        unsupported = (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.escaped_bind_names
        )
        if unsupported:
            raise ValueError(
                f"a DirectStatement needs plain bound parameters and no Python-side defaults: {self.statement}"
            )
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        assert names is not None
        binds = tuple((name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names)
        defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        expected = frozenset(name for name, bind in compiled.binds.items() if bind.required)
        entry = _Compiled(compiled.string, compiled.positional, binds, defaults, expected, self._result_types)
        self._compiled[dialect] = entry
        return entry


_CURSOR = "billing_direct_cursor"


def _cursor(conn: Connection) -> Any:
    """The cursor the direct statements share on ``conn``'s DBAPI connection, kept with it in the pool.

    Opening and closing a cursor per statement costs two more round trips through the event loop on
    aiomysql (SQLAlchemy's adapter awaits both); every statement here fetches all its rows, so the next
    one finds the cursor idle. A replaced DBAPI connection (after a disconnect) gets a new cursor.
    """
    pooled = conn.connection
    dbapi_connection = pooled.dbapi_connection
    kept = pooled.info.get(_CURSOR)
    if kept is not None and kept[0] is dbapi_connection:
        return kept[1]
    cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    pooled.info[_CURSOR] = (dbapi_connection, cursor)
    return cursor
