"""The latent state: handoffs (vectors, text, meta) and taught exemplars, durable and searchable.

- `base.py`: the `LatentStore` interface every backend keeps, handles and namespaces.
- `factory.py`: `open_store`, which opens the backend the settings name.
- `sqlite.py` + `sqlite_migrations.py` + `vector_index.py`: the embedded default (SQLite WAL + hnswlib).
- `postgres.py` + `postgres_migrations.py`: the shared store (PostgreSQL + pgvector).
- `local_postgres.py`: a throwaway PostgreSQL for trials, tests and benchmarks."""
