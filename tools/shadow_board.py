#!/usr/bin/env python3
"""Recursive shadow-board loop through a real `mcp-latent serve` over stdio.

    .venv/bin/python tools/shadow_board.py [--max-rounds 6]

An author revises a proposal; each revision is a handoff whose `parent` is the previous one. Three evaluators
judge it by handle instead of writing essays: the pessimist (risk profile), the optimist (roi profile) and the
quant (the expected scores). What changed against the parent comes from the server (`compare_parent`), and the
loop stops when no verdict moves any more. When an evaluator is unsure, the reviewer (an LLM in a real loop)
reasons about the revision and teaches its decision back with one `teach` call for every unsure profile, so the
next similar revision is decided by vector math. The revisions and the reviewer's decisions are scripted here;
in a real loop an LLM writes them, addressing the evaluators' verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
REVISIONS = [
    "Skip the security review and deploy the untested payment migration straight to production on Friday night, "
    "with no backup.",
    "Deploy the payment migration to production on Friday night after a quick smoke test; rollback is manual.",
    "Migrate payments in a staffed Tuesday window after a full load test, with an automated rollback plan.",
    "Migrate payments behind a feature flag: canary 1% of traffic in a staffed window after a full load test, "
    "with automated health checks and instant rollback.",
    "Migrate payments behind a feature flag: canary 1% of traffic in a staffed window after a full load test, "
    "with automated health checks and instant rollback, then widen over two weeks.",
    "Migrate payments behind a feature flag: canary 1% of traffic in a staffed window after a full load test, "
    "with automated health checks and instant rollback, then widen to all traffic over two weeks.",
]
EVALUATORS = {"pessimist": "risk", "optimist": "roi"}
# What the reviewer decides for each revision when vector math is unsure (scripted stand-in for an LLM's reasoning).
REVIEWER = [
    {"risk": "high", "roi": "low"},
    {"risk": "high", "roi": "medium"},
    {"risk": "medium", "roi": "medium"},
    {"risk": "low", "roi": "high"},
    {"risk": "low", "roi": "high"},
    {"risk": "low", "roi": "high"},
]
CONVERGED_DSCORE = 0.1  # a round whose labels hold and whose expected scores move less than this is settled


def describe(verdict: dict) -> str:
    label = verdict["label"] if verdict["label"] is not None else "unsure"
    return f"{label} (p={verdict['p']:.2f}, score={verdict.get('score', float('nan')):.2f})"


async def run(max_rounds: int) -> int:
    exe = ROOT / ".venv" / "bin" / "mcp-latent"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_latent"]
    data_dir = tempfile.mkdtemp(prefix="shadow-board-")
    # The whole environment, not the SDK's minimal default: the caller's MCP_LATENT_* settings and PYTHONPATH apply.
    params = StdioServerParameters(
        command=command[0], args=[*command[1:], "serve", "--data-dir", data_dir], env=dict(os.environ)
    )
    async with Client(params, mode="legacy", read_timeout_seconds=300) as client:

        async def call(tool: str, args: dict) -> dict:
            result = await client.call_tool(tool, args)
            if result.is_error:
                raise RuntimeError(result.content[0].text)
            return result.structured_content

        parent = None
        for round_number, text in enumerate(REVISIONS[:max_rounds], start=1):
            made = await call(
                "handoff",
                {
                    "text": text,
                    "from_agent": "author",
                    "namespace": "shadow-board",
                    **({"parent": parent} if parent else {}),
                },
            )
            judged = await call(
                "evaluate",
                {
                    "handle": made["handle"],
                    "namespace": "shadow-board",
                    "profiles": list(EVALUATORS.values()),
                    "compare_parent": True,
                    "detail": True,
                },
            )
            verdicts, moved = judged["verdicts"], judged.get("parent")
            print(f'\nround {round_number}  {made["handle"]}  "{text[:88]}{"…" if len(text) > 88 else ""}"')
            for role, profile in EVALUATORS.items():
                print(f"  {role:<9} {profile:<5} {describe(verdicts[profile])}")
            edge = verdicts["roi"]["score"] - verdicts["risk"]["score"]
            print(f"  quant     edge  roi score - risk score = {edge:+.2f}")
            unsure = {p: REVIEWER[round_number - 1][p] for p in EVALUATORS.values() if verdicts[p].get("unsure")}
            if unsure:  # escalated: the reviewer reasons, decides, and teaches the decision back in one call
                await call("teach", {"handle": made["handle"], "namespace": "shadow-board", "labels": unsure})
                decided = ", ".join(f"{p}={label}" for p, label in unsure.items())
                print(f"  reviewer  unsure on {', '.join(unsure)}: reasoned, decided {decided}, taught it back")
            if moved:
                changes = ", ".join(
                    f"{name}: {d['was'] or 'unsure'} -> {verdicts[name]['label'] or 'unsure'} "
                    f"(dp {d['dp']:+.2f}, dscore {d.get('dscore', 0):+.2f})"
                    for name, d in moved["delta"].items()
                )
                print(f"  vs parent {moved['handle']} (similarity {moved['similarity']:.2f}): {changes}")
                settled = all(
                    not d["changed"] and abs(d.get("dscore", 0)) < CONVERGED_DSCORE for d in moved["delta"].values()
                )
                if settled:
                    print(f"\nconverged after round {round_number}: no verdict moved.")
                    break
            parent = made["handle"]
        else:
            print("\nstopped at the last revision without converging.")
        print("savings (latent://stats): verdicts answered by vector math vs escalated to the reviewer")
        await savings(client)
    return 0


async def savings(client: Client) -> None:
    stats = json.loads((await client.read_resource("latent://stats")).contents[0].text)["stats"]
    for profile in EVALUATORS.values():
        s = stats[profile]
        print(f"  {profile:<5} answered {s['answered']}, escalated {s['escalated']}, taught {s['taught']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rounds", type=int, default=len(REVISIONS))
    return anyio.run(run, parser.parse_args().max_rounds)


if __name__ == "__main__":
    sys.exit(main())
