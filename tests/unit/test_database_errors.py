"""How the database boundary classifies driver errors (billing_core/db/errors.py), on constructed errors."""

from __future__ import annotations

import sqlite3

import pymysql
import pytest
from sqlalchemy.exc import DataError, IntegrityError, InternalError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from billing_core.db.errors import is_conflict, is_retryable, typed_database_errors, typed_error
from billing_core.errors import DatabaseError, DatabaseNotMigrated, DatabaseRejected, DatabaseUnavailable


def mysql(kind, code: int, text: str = "..."):  # type: ignore[no-untyped-def]
    driver_class = {
        OperationalError: pymysql.err.OperationalError,
        DataError: pymysql.err.DataError,
        ProgrammingError: pymysql.err.ProgrammingError,
        IntegrityError: pymysql.err.IntegrityError,
        InternalError: pymysql.err.InternalError,
    }[kind]
    return kind("INSERT ...", {"secret": "x"}, driver_class(code, text))


def sqlite(kind, text: str):  # type: ignore[no-untyped-def]
    return kind("SELECT ...", {}, sqlite3.OperationalError(text))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (mysql(OperationalError, 2003, "Can't connect"), DatabaseUnavailable),
        (mysql(OperationalError, 2013, "Lost connection"), DatabaseUnavailable),
        (mysql(OperationalError, 1213, "Deadlock found"), DatabaseUnavailable),
        (mysql(OperationalError, 1205, "Lock wait timeout exceeded"), DatabaseUnavailable),
        (mysql(OperationalError, 1045, "Access denied"), DatabaseUnavailable),
        (sqlite(OperationalError, "database is locked"), DatabaseUnavailable),
        (PoolTimeout("QueuePool limit of size 20 overflow 20 reached"), DatabaseUnavailable),
        (mysql(DataError, 1406, "Data too long for column 'name'"), DatabaseRejected),
        (mysql(DataError, 1264, "Out of range value for column 'amount'"), DatabaseRejected),
        (mysql(OperationalError, 1366, "Incorrect integer value"), DatabaseRejected),
        (sqlite(OperationalError, "string or blob too big"), DatabaseRejected),
        (mysql(ProgrammingError, 1146, "Table 'billing.companies' doesn't exist"), DatabaseNotMigrated),
        (mysql(OperationalError, 1054, "Unknown column 'timezone'"), DatabaseNotMigrated),
        (sqlite(OperationalError, "no such table: companies"), DatabaseNotMigrated),
        (sqlite(OperationalError, "table ledger has no column named kind"), DatabaseNotMigrated),
        (mysql(OperationalError, 1364, "Field 'email' doesn't have a default value"), DatabaseRejected),
        (mysql(OperationalError, 1049, "Unknown database 'billing'"), DatabaseUnavailable),
        (mysql(InternalError, 1105, "Unknown error"), DatabaseError),
        (mysql(OperationalError, 1100, "Table was not locked with LOCK TABLES"), DatabaseError),
    ],
)
def test_driver_errors_become_the_cores_typed_errors(error, expected):
    typed = typed_error(error, sqlite=False)
    assert type(typed) is expected
    assert typed.retryable is (expected is DatabaseUnavailable)
    assert "INSERT" not in typed.message and "secret" not in typed.message


def test_a_missing_schema_tells_the_operator_to_run_the_upgrade():
    typed = typed_error(sqlite(OperationalError, "no such table: companies"), sqlite=True)
    assert "billing db upgrade" in typed.message


def test_sqlites_integer_overflow_is_a_rejected_value_only_on_sqlite():
    overflow = OverflowError("Python int too large to convert to SQLite INTEGER")
    assert type(typed_error(overflow, sqlite=True)) is DatabaseRejected
    assert typed_error(overflow, sqlite=False) is overflow


def test_unique_key_conflicts_pass_through_for_the_services_idempotency_checks():
    conflict = mysql(IntegrityError, 1062, "Duplicate entry 'x' for key 'uq'")
    with pytest.raises(IntegrityError):
        with typed_database_errors(sqlite=False):
            raise conflict


def test_the_typed_error_keeps_the_driver_error_as_its_cause():
    lost = mysql(OperationalError, 2006, "MySQL server has gone away")
    with pytest.raises(DatabaseUnavailable) as raised:
        with typed_database_errors(sqlite=False):
            raise lost
    assert raised.value.__cause__ is lost


def test_a_trigger_load_aborted_by_galera_is_retried_as_a_conflict_and_other_syntax_errors_are_not():
    aborted = mysql(
        ProgrammingError, 1064,
        "Trigger 'trg_statistics_call_charges_insert' has an error in its body: 'You have an error in your SQL "
        "syntax; check the manual ... near 'BEGIN INSERT INTO statistics_journal' at line 1'",
    )
    emptied = mysql(ProgrammingError, 1064, "Unknown trigger has an error in its body: 'Query was empty'")
    assert is_retryable(emptied) and is_conflict(emptied)
    plain = mysql(ProgrammingError, 1064, "You have an error in your SQL syntax near 'SELEC' at line 1")
    assert is_retryable(aborted) and is_conflict(aborted)
    assert not is_retryable(plain) and not is_conflict(plain)
