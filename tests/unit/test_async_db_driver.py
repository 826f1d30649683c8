"""Choosing the async processes' MariaDB driver, and the URLs operators already use."""

from __future__ import annotations

import ssl

import certifi
import pytest
from pydantic import ValidationError

from billing_core.bootstrap import build_services
from billing_core.config import Settings
from billing_core.db.database import loop_connection_options, normalize_url


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_event_loop_path_is_the_default_and_pymysql_threads_can_be_chosen(monkeypatch):
    assert settings().async_db_driver == "aiomysql"
    monkeypatch.setenv("BILLING_ASYNC_DB_DRIVER", "pymysql")
    assert settings().async_db_driver == "pymysql"


def test_an_unknown_driver_is_refused_before_anything_starts():
    with pytest.raises(ValidationError):
        settings(async_db_driver="mysqlclient")


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://billing:pw@db.internal:3306/billing",
        "mysql://billing:pw@db.internal:3306/billing",
        "mariadb+pymysql://billing:pw@db.internal:3306/billing",
        "mysql+aiomysql://billing:pw@db.internal:3306/billing",
    ],
)
def test_every_mariadb_url_form_runs_on_pymysql_in_threads_and_aiomysql_in_the_loop(url):
    assert normalize_url(url) == "mysql+pymysql://billing:pw@db.internal:3306/billing?charset=utf8mb4"
    loop_url, connect_args = loop_connection_options(url)
    assert loop_url.render_as_string(hide_password=False) == (
        "mysql+aiomysql://billing:pw@db.internal:3306/billing?charset=utf8mb4"
    )
    assert "ssl" not in connect_args


def test_tls_options_in_the_url_become_a_verifying_context_for_aiomysql():
    loop_url, connect_args = loop_connection_options(
        f"mysql+pymysql://u:p@db.example.com/billing?ssl_ca={certifi.where()}"
    )
    context = connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "ssl_ca" not in loop_url.query


def test_sqlite_keeps_worker_threads_whatever_the_driver_setting(tmp_path):
    built = build_services(settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    try:
        assert built.call.in_loop is False
    finally:
        built.close()


def test_mariadb_runs_database_calls_in_the_loop_unless_pymysql_is_chosen():
    url = "mysql+pymysql://billing:pw@127.0.0.1:1/billing"  # never connected to
    for driver, in_loop in (("aiomysql", True), ("pymysql", False)):
        built = build_services(settings(database_url=url, async_db_driver=driver))
        try:
            assert built.call.in_loop is in_loop
        finally:
            built.close()
