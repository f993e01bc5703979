"""`mcp-latent serve` and `mcp-latent evaluate`."""

from __future__ import annotations

import argparse

from mcp_latent.cli.common import print_json, service_from_args, settings_from_args


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # The model, the store and the profiles load in a background thread that the server starts once it answers
    # (its lifespan), not while the MCP SDK imports: both are Python-heavy, so loading beside the import only shared
    # the GIL with it and made `tools/list` wait for the model too (1.11 s quiet, against ~0.7 s after this change),
    # without bringing the first verdict sooner.
    from mcp_latent.server.startup import serve

    serve(settings)  # returns once the client left (stdio) or the process was stopped (http), the store closed
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    service = service_from_args(args)
    try:
        result = service.evaluate(text=args.text, profiles=args.profile or None, detail=args.detail)
    finally:
        service.close()
    if args.json:
        print_json(result)
        return 0
    for name, verdict in result["verdicts"].items():
        label = verdict["label"] if verdict["label"] is not None else "UNSURE (escalate)"
        extra = f"  score={verdict['score']}" if "score" in verdict else ""
        print(f"{name:>12}: {label}  p={verdict['p']}{extra}")
        for text, lab, sim in verdict.get("neighbours", []):
            print(f"{'':>14}~ {sim:.2f} [{lab}] {text}")
    return 0
