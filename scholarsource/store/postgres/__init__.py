"""The PostgreSQL store: several boxes share one queue (`pip install 'scholarsource[postgres]'`).

connection.py opens the per-process pool, schema.py migrates, sql.py holds every statement,
store.py implements the Store contract over them."""

from scholarsource.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
