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
        print(verdict_line(name, verdict))
        if verdict.get("top"):
            print(f"{'':>14}top: " + ", ".join(f"{lab} {p:.2f}" for lab, p in verdict["top"]))
        if verdict.get("words"):
            print(f"{'':>14}words: {', '.join(verdict['words'])}")
        for text, lab, sim in verdict.get("neighbours", []):
            print(f"{'':>14}~ {sim:.2f} [{lab}] {text}")
    return 0


# Why a verdict escalated, in words (`reason` in a detailed verdict; see judge/decision.py).
REASONS = {
    "out_of_scope": "the nearest exemplar is too far: the text is about none of the labels",
    "low_confidence": "the best label is not probable enough to answer with",
    "differs_from_taught": "a taught text this close says otherwise on a decisive fact (a negation, a figure)",
    "no_exemplars": "the profile has no exemplars yet",
}


def verdict_line(name: str, verdict: dict) -> str:
    """One verdict on one line: the label, or UNSURE with why when the verdict says (--detail), and p."""
    if verdict.get("fitting"):
        return f"{name:>12}: NOT READY ({verdict['fitting']})"
    if verdict["label"] is not None:
        label = verdict["label"]
    elif verdict.get("reason"):
        label = f"UNSURE (escalate: {REASONS.get(verdict['reason'], verdict['reason'])})"
    else:
        label = "UNSURE (escalate)"
    extra = f"  score={verdict['score']}" if "score" in verdict else ""
    return f"{name:>12}: {label}  p={verdict['p']}{extra}"
