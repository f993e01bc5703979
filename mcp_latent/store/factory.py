"""Opening the store the settings name. Backends import lazily: the default install needs no database client."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcp_latent.errors import StoreError
from mcp_latent.store.base import LatentStore

if TYPE_CHECKING:
    from mcp_latent.settings import Settings


def open_store(settings: Settings, dim: int | None = None, model_id: str | None = None) -> LatentStore:
    """The backend the settings name (the embedded SQLite store by default), opened and migrated.

    Without `model_id` the store adopts the model its data already holds: enough for commands that only read
    (taught exemplars, namespaces, export) without loading the model; writing vectors then fails with StoreError."""
    # Backends import lazily: the default install needs no database client.
    if settings.store_url:
        if not settings.store_url.startswith(("postgresql://", "postgres://")):
            raise StoreError(
                "MCP_LATENT_STORE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/database), "
                "or empty for the embedded store."
            )
        try:
            from mcp_latent.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                f"MCP_LATENT_STORE_URL names PostgreSQL, but its client is not installed ({exc}); "
                "pip install 'mcp-latent[postgres]'."
            ) from exc
        return PostgresStore(
            settings.store_url,
            dim,
            model_id,
            schema=settings.store_schema,
            pool_size=settings.store_pool_size,
            timeout_s=settings.store_timeout_seconds,
            statement_timeout_s=settings.store_statement_timeout_seconds,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            hnsw_ef_search=settings.hnsw_ef_search,
        )
    from mcp_latent.store.sqlite import SqliteStore

    return SqliteStore(
        Path(settings.data_dir),
        dim,
        model_id,
        busy_timeout_s=settings.sqlite_busy_timeout_seconds,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
        hnsw_ef_search=settings.hnsw_ef_search,
        index_in_background=settings.hnsw_add_in_background,
    )
