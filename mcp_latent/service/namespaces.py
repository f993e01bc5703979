"""Namespace helpers shared by the service and the CLI: existence checks and export as JSON lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from mcp_latent.errors import NotFound
from mcp_latent.store.base import LatentStore, check_namespace

log = logging.getLogger(__name__)


def existing_namespace(store: LatentStore, namespace: str) -> str:
    """The namespace, checked; NotFound naming the others when it holds no handoffs (an empty export or a drop of
    a mistyped name would look like a success)."""
    namespace = check_namespace(namespace)
    known = [entry["namespace"] for entry in store.namespaces()]
    if namespace not in known:
        raise NotFound(f"namespace {namespace!r} has no handoffs; namespaces: {', '.join(known) or 'none'}.")
    return namespace


def export_namespace(store: LatentStore, namespace: str) -> Iterator[dict[str, Any]]:
    """Every record of an existing namespace as JSON-able dicts (vectors included), oldest first. A plain function
    of the store: the command line exports without loading the model."""
    namespace = existing_namespace(store, namespace)  # checked now, not at the first next()
    return (
        {**record.public(), "vector": [round(float(v), 6) for v in record.vector]} for record in store.export(namespace)
    )
