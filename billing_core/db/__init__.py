"""Storage: SQLAlchemy tables, the transaction runner and Alembic migrations."""
