"""The latent state: handoffs (vectors, text, meta) and taught exemplars, durable and searchable.

- `base.py`: the `LatentStore` interface every backend keeps, handles and namespaces.
- `factory.py`: `open_store`, which opens the backend the settings name.
- `sqlite.py` + `sqlite_migrations.py`: the embedded default (SQLite WAL), with `sqlite_rows.py` (rows and SQL)
  and `sqlite_index.py` + `vector_index.py` (the per-namespace hnswlib caches).
- `postgres.py` + `postgres_migrations.py`: the shared store (PostgreSQL + pgvector), with `postgres_wire.py`
  (pgvector's binary format, rows, filters, errors).
- `local_postgres.py`: a throwaway PostgreSQL for trials, tests and benchmarks."""
