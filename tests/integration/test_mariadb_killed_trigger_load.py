"""Why writes on a Galera node can fail with "has an error in its body" (1064) long after a conflict.

MariaDB 10.11 parses a table's triggers each time it makes a new TABLE object for the table cache (a cache
miss: the first open after a start or a rejoin, a FLUSH, more concurrent users than cached objects). The
lexer gives up on a killed statement by returning end-of-input (``Lex_input_stream::lex_one_token`` checks
``thd->killed``), and the trigger loader (``Table_triggers_list::check_n_load``) records the resulting parse
error on the TABLE instead of failing the open: "Unknown trigger has an error in its body: 'Query was
empty'" when the kill came before the first token, "Trigger '<name>' has an error in its body: ... syntax
... near '<the rest of the body>'" when it came in the middle. ``close_thread_table`` then hands that TABLE
back to the table cache like any other, so every later write of a row in that table, from any connection,
fails with that error until the TABLE leaves the cache (``FLUSH TABLES``, DDL on the table, a restart).

On Galera a kill is routine: an applier that needs the locks of a local transaction brute-force aborts it
with ``KILL_QUERY_HARD`` (``wsrep_thd_bf_abort``). The victim may be opening ``call_charges`` at that
moment, and a node that rejoined after a SIGKILL opens everything anew under load. This test shows the
server's behaviour without Galera: a ``KILL QUERY`` that lands while a statement opens a table with triggers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pymysql
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.mariadb_only

ROUNDS = 2000
INSERT = (
    "INSERT INTO webhook_events (provider, event_id, event_type, payload, status, attempts, next_attempt_at,"
    " received_at, processed_at) VALUES ('stripe', %s, 'probe', '{}', 'processed', 0, NOW(6), NOW(6), NOW(6))"
)


@pytest.fixture
def connect(mariadb_template_url: str) -> Iterator[Callable[[], pymysql.Connection]]:
    url = make_url(mariadb_template_url)
    opened: list[pymysql.Connection] = []

    def open_one() -> pymysql.Connection:
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", database=url.database, autocommit=False)
        opened.append(conn)
        return conn

    yield open_one
    if opened:
        with opened[0].cursor() as cur:
            cur.execute("FLUSH TABLES webhook_events")  # no broken TABLE left behind for other tests
    for conn in opened:
        conn.close()


def write_error(conn: pymysql.Connection, event_id: str) -> str | None:
    """Insert a row (rolled back) and return the server's error, if any."""
    try:
        with conn.cursor() as cur:
            cur.execute(INSERT, (event_id,))
        return None
    except pymysql.err.MySQLError as error:
        return f"{error.args[0]} {error.args[1]}"
    finally:
        conn.rollback()


def test_a_statement_killed_while_it_opens_a_table_leaves_its_triggers_broken_for_every_later_write_until_flushed(
    connect,
):
    admin, victim, killer, other = connect(), connect(), connect(), connect()
    broken: str | None = None
    for n in range(ROUNDS):
        with admin.cursor() as cur:
            cur.execute("FLUSH TABLES webhook_events")  # the next open makes a new TABLE and parses the triggers
        # the kill lands at a different moment of the victim's statement each round
        timer = threading.Timer((n % 40) * 0.000025, killer.cursor().execute, (f"KILL QUERY {victim.thread_id()}",))
        timer.start()
        try:
            with victim.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM webhook_events")
        except pymysql.err.OperationalError:
            pass  # interrupted, as asked
        timer.join()
        victim.rollback()
        error = write_error(victim, f"probe-{n}")  # a kill that came late may interrupt this one instead
        if error is not None and "has an error in its body" in error:
            broken = error
            break
    assert broken is not None, f"no kill landed inside the table open in {ROUNDS} rounds"
    assert broken.startswith("1064 "), broken

    # not this statement only: the cached TABLE keeps the error for every write, from any connection
    assert write_error(victim, "again") == broken
    assert write_error(other, "other") == broken
    with admin.cursor() as cur:
        cur.execute("FLUSH TABLES webhook_events")
    assert write_error(other, "after-flush") is None
