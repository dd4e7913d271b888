"""The durable queue: the Store contract (base.py), its schema and the SQLite store."""
