"""`mcp-latent profiles untaught list|revert`: an operator's view of taught exemplars by teacher and time, and
taking a poisoned teach back (docs/teach-control.md). Opens the store only (no model, no fit): every server on
the store drops reverted exemplars from its verdicts on its next poll (MCP_LATENT_STORE_POLL_SECONDS)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from mcp_latent.cli.common import add_common_options, print_json
from mcp_latent.cli.store import store_from_args
from mcp_latent.errors import InvalidInput


def _selection(args: argparse.Namespace, store: Any) -> list[Any]:
    from mcp_latent.service.teachers import parse_when, select_taught

    since = None if args.since is None else parse_when(args.since)
    until = None if args.until is None else parse_when(args.until)
    return select_taught(store, args.teacher, since, until, args.profile)


def _show(exemplars: list[Any], as_json: bool) -> None:
    from mcp_latent.service.teachers import describe_taught

    if as_json:
        for exemplar in exemplars:
            print_json(exemplar.public())
        return
    for exemplar in exemplars:
        print(describe_taught(exemplar))


def cmd_untaught_list(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        exemplars = _selection(args, store)
        _show(exemplars, args.json)
        if not args.json:
            print(f"{len(exemplars)} taught exemplar(s) selected")
    finally:
        store.close()
    return 0


def cmd_untaught_revert(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        exemplars = _selection(args, store)
        if not args.yes:  # show what would go, change nothing
            _show(exemplars, args.json)
            raise InvalidInput(
                f"this would revert the {len(exemplars)} taught exemplar(s) above; add --yes to revert them "
                "(they are kept in the store, marked reverted, and drop out of every server's verdicts)."
            )
        reverted = store.revert_taught([e.id for e in exemplars], reverted_by=args.operator or getpass.getuser())
        _show(reverted, args.json)
        if not args.json:
            profiles = sorted({e.profile for e in reverted})
            print(f"reverted {len(reverted)} taught exemplar(s) of {', '.join(profiles) or 'no profile'}")
    finally:
        store.close()
    return 0


def add_untaught_parser(sub: Any) -> None:
    untaught = sub.add_parser("untaught", help="list or revert taught exemplars by teacher or time")
    actions = untaught.add_subparsers(dest="untaught_command", required=True, metavar="ACTION")
    for name, func, help_text in (
        ("list", cmd_untaught_list, "taught exemplars (not reverted) matching the filters"),
        ("revert", cmd_untaught_revert, "revert the taught exemplars matching the filters (needs --yes)"),
    ):
        parser = actions.add_parser(name, help=help_text)
        add_common_options(parser)
        parser.add_argument("--teacher", help="who taught them: a token's name, or the stdio user ('local')")
        parser.add_argument("--since", help="taught at or after: unix seconds, ISO 8601 (UTC) or an age (30m, 2h)")
        parser.add_argument("--until", help="taught before: same forms as --since")
        parser.add_argument("--profile", help="only this profile's exemplars")
        parser.add_argument("--json", action="store_true", help="one JSON object per exemplar")
        if name == "revert":
            parser.add_argument("--yes", action="store_true", help="revert them (without it: show, change nothing)")
            parser.add_argument("--operator", help="recorded as who reverted them (default: the login name)")
        parser.set_defaults(func=func)
