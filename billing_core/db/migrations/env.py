"""Alembic environment: runs migrations on our own engine setup (SQLite pragmas, MariaDB options)."""

from __future__ import annotations

from alembic import context

from billing_core.db.database import make_engine
from billing_core.db.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"
engine = make_engine(url, pool_size=1)
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
finally:
    engine.dispose()
