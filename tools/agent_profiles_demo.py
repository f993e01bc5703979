"""Capture the example output of docs/agent-profiles.md: a real `mcp-latent serve` over stdio (real model), driven
by the official SDK client, defines an evaluator, gets unsure verdicts, teaches 30 decisions, gets decided ones,
then manages its handoffs (recent, filtered similar, forget) and deletes the profile. Prints each call and its
minified result, and the timings.

    .venv/bin/python tools/agent_profiles_demo.py > /tmp/demo.md

Texts: those of tests/test_e2e_agent_profiles.py (written for it). Shipped profiles are off to keep it short."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from test_e2e_agent_profiles import DESCRIPTION, FIRST, LABELS, NEW, TEACH  # noqa: E402


def show(tool: str, arguments: dict, text: str) -> None:
    print(f"\n`{tool}` {json.dumps(arguments, ensure_ascii=False)}\n```json\n{text}\n```")


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="agent-profiles-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env["MCP_LATENT_BUILTIN_PROFILES"] = "false"
    exe = shutil.which("mcp-latent", path=str(Path(sys.executable).parent))
    server = StdioServerParameters(command=exe, args=["serve", "--data-dir", str(data)], env=env)
    timings = {}
    async with Client(server, mode="legacy", read_timeout_seconds=300) as client:

        async def call(tool: str, arguments: dict, quiet: bool = False) -> dict:
            result = await client.call_tool(tool, arguments)
            text = result.content[0].text
            if not quiet:
                show(tool, arguments, text)
            return {} if result.is_error else json.loads(text)

        started = time.monotonic()
        await call("define_profile", {"name": "urgency", "description": DESCRIPTION, "labels": LABELS})
        await call("handoff", {"text": FIRST[0], "from_agent": "triage", "evaluate": ["urgency"]})
        timings["define to first verdict (fit included), s"] = time.monotonic() - started
        for text in FIRST[1:]:
            await call("handoff", {"text": text, "from_agent": "triage", "evaluate": ["urgency"]}, quiet=True)
        await call("profiles", {})
        await call(
            "define_profile",
            {"name": "bad", "description": "x", "labels": [{"name": "a"}, {"name": "b", "examples": [""]}]},
        )
        started = time.monotonic()
        first = True
        for label, texts in TEACH.items():
            for text in texts:
                await call("teach", {"profile": "urgency", "label": label, "text": text}, quiet=not first)
                first = False
        timings["30 teaches, s"] = time.monotonic() - started
        started = time.monotonic()
        while True:
            verdicts = [
                (await call("evaluate", {"text": t, "profiles": ["urgency"]}, quiet=True))["verdicts"]["urgency"]
                for ts in NEW.values()
                for t in ts
            ]
            if all(v["label"] for v in verdicts) or time.monotonic() - started > 300:
                break
            await anyio.sleep(1)
        timings["last teach to all decided, s"] = time.monotonic() - started
        for texts in NEW.values():
            for text in texts:
                await call("evaluate", {"text": text, "profiles": ["urgency"]})
        await call("evaluate", {"text": "thanks a lot, see you tomorrow!", "profiles": ["urgency"]})
        await call("profiles", {})
        for i, text in enumerate(TEACH["now"][:3]):
            await call("handoff", {"text": text, "from_agent": "monitor", "meta": {"ticket": f"T-{i}"}}, quiet=True)
        await call("recent", {"limit": 3})
        await call("similar", {"text": "the site is down", "k": 2, "from_agent": "monitor", "since": -3600})
        await call("similar", {"text": "the site is down", "k": 2, "meta": {"ticket": "T-1"}})
        recent = (await call("recent", {"limit": 1}, quiet=True))["recent"]
        await call("forget", {"handle": recent[0]["handle"]})
        await call("forget", {"from_agent": "triage"})
        await call("delete_profile", {"name": "urgency"})
    print("\n" + "\n".join(f"- {name}: {value:.1f}" for name, value in timings.items()))
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
