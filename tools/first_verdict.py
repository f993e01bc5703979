"""How soon a fresh data dir gives its first verdict after setup (docs/first-hour.md): spawn `mcp-latent serve` on
a new, empty data dir through the official SDK's stdio client and time the first
handoff(evaluate=[risk, roi, category]), from the spawn and from the first call.

    tools/first_verdict.py [--runs 3] [--profile-cache DIR]

Run `tools/dev.sh setup` (or `mcp-latent profiles fit`) first: it fills the shared profile cache these servers read
(the default ~/.cache/mcp-latent/profiles, or --profile-cache)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

TEXT = "disable the firewall and give every contractor admin access to production"
PROFILES = ["risk", "roi", "category"]


async def one_run(data_dir: Path, env: dict[str, str]) -> dict:
    exe = shutil.which("mcp-latent", path=str(Path(sys.executable).parent)) or "mcp-latent"
    params = StdioServerParameters(command=exe, args=["serve", "--data-dir", str(data_dir)], env=env)
    spawned = time.monotonic()
    async with Client(params, mode="legacy", read_timeout_seconds=120) as client:
        initialized = time.monotonic()
        result = await client.call_tool("handoff", {"text": TEXT, "evaluate": PROFILES})
        answered = time.monotonic()
    verdicts = result.structured_content["verdicts"] if not result.is_error else result.content[0].text
    return {
        "initialize_s": round(initialized - spawned, 2),
        "first_call_s": round(answered - initialized, 2),
        "first_verdict_after_spawn_s": round(answered - spawned, 2),
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile-cache", help="the shared profile cache (default: the setting's default)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    if args.profile_cache:
        env["MCP_LATENT_PROFILE_CACHE_DIR"] = args.profile_cache
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="fresh-data-dir-") as data_dir:
            runs.append(anyio.run(one_run, Path(data_dir), env))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"commit": commit, "cores": os.cpu_count(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
