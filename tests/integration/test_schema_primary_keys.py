"""Galera replicates rows by primary key: every table, in the model and in the migrated schema, has one.

The Galera test nodes also run with ``innodb_force_primary_key``, so a migration that creates a table
without one fails there as well.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from billing_core.db.database import normalize_url
from billing_core.db.tables import Base


def test_every_table_of_the_model_has_a_primary_key():
    missing = [table.name for table in Base.metadata.sorted_tables if not table.primary_key.columns]
    assert Base.metadata.sorted_tables and missing == []


def test_every_table_of_the_migrated_schema_has_a_primary_key(database_url):
    engine = create_engine(normalize_url(database_url))
    try:
        inspector = inspect(engine)
        tables = inspector.get_table_names()
        missing = [name for name in tables if not inspector.get_pk_constraint(name)["constrained_columns"]]
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) | {"alembic_version"} <= set(tables)
    assert missing == []
