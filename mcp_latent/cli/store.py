"""`mcp-latent namespaces ...` and `mcp-latent postgres start|stop`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcp_latent.cli.common import print_json, settings_from_args
from mcp_latent.errors import InvalidInput


def store_from_args(args: argparse.Namespace) -> Any:
    """The data dir's store without the model (it adopts the model its records were made with): namespaces
    commands only read or delete records."""
    from mcp_latent.store.factory import open_store

    return open_store(settings_from_args(args))


def cmd_namespaces_list(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        for entry in store.namespaces():
            print(f"{entry['namespace']:<32} {entry['count']:>8} handoffs")
    finally:
        store.close()
    return 0


def cmd_namespaces_export(args: argparse.Namespace) -> int:
    from mcp_latent.service.namespaces import export_namespace

    store = store_from_args(args)
    try:
        for record in export_namespace(store, args.namespace):  # NotFound (exit 2) for an unknown namespace
            print_json(record)
    finally:
        store.close()
    return 0


def cmd_namespaces_drop(args: argparse.Namespace) -> int:
    from mcp_latent.service.namespaces import existing_namespace

    if not args.yes:  # checked before anything is opened
        raise InvalidInput(
            f"`namespaces drop {args.namespace}` deletes every handoff of that namespace for good; add --yes to "
            f"confirm (keep a copy first: mcp-latent namespaces export {args.namespace} > {args.namespace}.jsonl)."
        )
    store = store_from_args(args)
    try:
        namespace = existing_namespace(store, args.namespace)  # a mistyped name is an error, not "dropped 0"
        print_json({"namespace": namespace, "dropped": store.drop(namespace)})
    finally:
        store.close()
    return 0


def cmd_postgres_start(args: argparse.Namespace) -> int:
    from mcp_latent.store.local_postgres import LocalPostgres

    server = LocalPostgres(args.dir, args.pg_port or None)
    if server.running:
        print(f"already running (pid {server.pid})", file=sys.stderr)
    else:
        server.start()
    print(f"MCP_LATENT_STORE_URL={server.url}")
    return 0


def cmd_postgres_stop(args: argparse.Namespace) -> int:
    from mcp_latent.store.local_postgres import LocalPostgres

    LocalPostgres(args.dir).stop()
    return 0
