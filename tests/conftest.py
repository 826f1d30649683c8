"""Fixtures: every database test runs on SQLite and on a private MariaDB server.

The MariaDB server is started once per test session (data directory under ``build/``) unless
``BILLING_TEST_MARIADB_URL`` points at one already; a missing server is an error, never a skip.
Each test gets an empty, fully migrated database: SQLite copies a migrated template file,
MariaDB empties the tables of one migrated schema per worker.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from billing_core.adapters.stripe_gateway import StripeGateway
from billing_core.bootstrap import Services, build_services
from billing_core.config import Settings
from billing_core.db import migrate
from billing_core.db.database import Database
from billing_core.db.tables import Base
from tests.support.galera import GaleraCluster
from tests.support.localstripe import SECRET_KEY as LOCALSTRIPE_KEY
from tests.support.localstripe import LocalStripe
from tests.support.mariadb import MariaDBServer, build_dir

BACKENDS = ("sqlite", "mariadb")


class Clock:
    """A controllable clock; starts at a fixed instant and moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer | None]:
    if os.environ.get("BILLING_TEST_MARIADB_URL"):
        yield None
        return
    server = MariaDBServer(build_dir() / f"mariadb-test-{os.getpid()}").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_template_url(mariadb_server: MariaDBServer | None) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"billing_test_{worker}"
    if mariadb_server is None:
        import pymysql
        from sqlalchemy.engine import make_url

        base = make_url(os.environ["BILLING_TEST_MARIADB_URL"])
        conn = pymysql.connect(host=base.host, port=base.port or 3306, user=base.username,
                               password=base.password or "")
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
        url = base.set(database=name).render_as_string(hide_password=False)
    else:
        url = mariadb_server.create_database(name)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def galera_cluster() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster for the tests that need one (started on first use, about 30 s)."""
    cluster = GaleraCluster(build_dir() / f"galera-test-{os.getpid()}").start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture(scope="session")
def galera_template_urls(galera_cluster: GaleraCluster) -> list[str]:
    """One migrated schema on the cluster (DDL replicates to every node); one URL per node."""
    urls = galera_cluster.create_database("billing_galera")
    migrate.upgrade(urls[0])
    return urls


@pytest.fixture
def galera_urls(galera_template_urls: list[str]) -> list[str]:
    """The cluster's schema, emptied for this test: one URL per node."""
    empty_mariadb(galera_template_urls[0])
    return galera_template_urls


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "billing.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def empty_mariadb(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f"DELETE FROM `{table.name}`"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    finally:
        db.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        target = tmp_path / "billing.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url = str(request.getfixturevalue("mariadb_template_url"))
    empty_mariadb(url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))


# The seller the tests invoice as (Settings has none by default; an operator must configure theirs).
TEST_SELLER: dict[str, str] = {
    "seller_name": "AskProAI GmbH",
    "seller_address_line1": "Friedrichstraße 123",
    "seller_postal_code": "10117",
    "seller_city": "Berlin",
    "seller_country": "DE",
    "seller_vat_id": "DE136695976",
    "seller_email": "billing@askproai.example",
}
NO_SELLER: dict[str, str] = {name: "" for name in TEST_SELLER if name != "seller_country"}


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test: nothing from the environment, the test seller unless overridden (``**NO_SELLER``)."""
    values = {**TEST_SELLER, **overrides}
    return Settings(_env_file=None, database_url=database_url, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def services(settings: Settings, clock: Clock) -> Iterator[Services]:
    built = build_services(settings, clock=clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """One emulator per test session; tests tell their data apart by fresh customers."""
    server = LocalStripe(tmp_path_factory.mktemp("localstripe")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stripe_gateway(localstripe: LocalStripe) -> StripeGateway:
    return StripeGateway(LOCALSTRIPE_KEY, test_mode=True, api_base=localstripe.url, max_network_retries=0)


@pytest.fixture
def stripe_services(settings: Settings, clock: Clock, stripe_gateway: StripeGateway) -> Iterator[Services]:
    """The whole system with its Stripe gateway pointed at the emulator."""
    built = build_services(settings, clock=clock, gateway=stripe_gateway)
    try:
        yield built
    finally:
        built.close()

