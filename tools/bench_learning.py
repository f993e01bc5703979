#!/usr/bin/env python3
"""Learning never slows judging: teach-to-effect on a large profile, isolation of other profiles during teaches and
refits, and startup with a large unfitted profile. A real `mcp-latent serve` over stdio, the official client.

    .venv/bin/python tools/bench_learning.py --data ../shared/data [--work /tmp/bench-learning] [--out DIR]

1. teach-to-effect: BANKING77's train split as one profile (about 10,000 exemplars, 77 labels); test texts are
   handed off, taught with their gold label, and evaluated by handle right after: the time from the teach call
   to the end of that evaluate, which must already list the taught text as nearest exemplar.
2. isolation: evaluate by handle on a small profile every 20 ms, first alone, then while the large profile is
   taught back to back (each teach queues a background refit): p50 / p99 / max of both phases, same run.
3. startup: a profiles dir holding a 15,000-exemplar, 141-label profile (BANKING77 + HWU64 train rows) that was
   never fitted, and a small one: seconds from spawn to `tools/list` and to the small profile's first verdict,
   beside the same server without the large profile.

The first run embeds and fits the large profile (minutes on 2 cores); `--work` keeps that fit for later runs.
`--only startup` measures just 3. (no fit of the large profile needed; about a minute), `--repeat N` starts each
server N times and reports every start and the median: the goal "tools/list and a small profile within 2 s with a
15k-exemplar profile in the profiles dir" is for a quiet machine, so run it there:

    nice -n 0 .venv/bin/python tools/bench_learning.py --only startup --repeat 5 --out /tmp/bench-startup
Timings are noisy on shared cores: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from learning_curve import percentile, read_rows  # noqa: E402

SMALL = {
    "happy": ["I love this, great work", "what a wonderful day", "this makes me so glad", "fantastic news"],
    "sad": ["this is terrible news", "I feel so down today", "what a disappointing result", "I am heartbroken"],
}


def write(directory: Path, name: str, labels: dict[str, list[str]]) -> None:
    from mcp_latent.profiles.spec import ProfileSpec, write_profile_file

    spec = ProfileSpec.model_validate(
        {"name": name, "target_accuracy": 0.98, "labels": [{"name": k, "examples": v} for k, v in labels.items()]}
    )
    path = directory / f"{name}.toml"
    if not path.exists():
        write_profile_file(spec, path)


def grouped(rows: list[dict], limit: int | None = None, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows[:limit]:
        out.setdefault(prefix + row["label"], []).append(row["text"])
    return out


def params(data_dir: Path, profiles_dir: Path, **env: str) -> StdioServerParameters:
    exe = ROOT / ".venv" / "bin" / "mcp-latent"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_latent"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    environment.update(
        {"MCP_LATENT_BUILTIN_PROFILES": "false", **{f"MCP_LATENT_{k.upper()}": v for k, v in env.items()}}
    )
    args = [*command[1:], "serve", "--data-dir", str(data_dir), "--profiles-dir", str(profiles_dir)]
    return StdioServerParameters(command=command[0], args=args, env=environment)


def stats(samples: list[float]) -> dict[str, float]:
    ms = [1000 * s for s in samples]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}


async def teach_and_isolation(work: Path, banking: list[dict], teaches: int) -> dict:
    profiles = work / "profiles-teach"
    profiles.mkdir(parents=True, exist_ok=True)
    write(profiles, "banking77", grouped([r for r in banking if r["split"] == "train"]))
    write(profiles, "mood", SMALL)
    tests = [r for r in banking if r["split"] == "test"][: 2 * teaches]
    async with Client(
        params(work / "data-teach", profiles, profile_wait_seconds="3600"), mode="legacy", read_timeout_seconds=3600
    ) as client:

        async def call(tool: str, arguments: dict) -> dict:
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise RuntimeError(f"{tool}: {result.content[0].text}")
            return result.structured_content

        started = time.monotonic()
        await call("evaluate", {"text": "warm up", "profiles": ["banking77", "mood"]})
        print(f"large profile ready after {time.monotonic() - started:.0f} s", file=sys.stderr)
        probe = (await call("handoff", {"text": "what a lovely surprise"}))["handle"]
        effect: list[float] = []
        seen = 0
        for row in tests[:teaches]:  # one at a time: teach, then the very next call
            handle = (await call("handoff", {"text": row["text"]}))["handle"]
            t0 = time.perf_counter()
            await call("teach", {"handle": handle, "labels": {"banking77": row["label"]}})
            judged = await call("evaluate", {"handle": handle, "profiles": ["banking77"], "detail": True})
            effect.append(time.perf_counter() - t0)
            seen += judged["verdicts"]["banking77"]["neighbours"][0][0] == row["text"]

        async def probe_for(seconds: float, out: list[float]) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                await call("evaluate", {"handle": probe, "profiles": ["mood"]})
                out.append(time.perf_counter() - t0)
                await anyio.sleep(0.02)

        quiet: list[float] = []
        await probe_for(10, quiet)
        busy: list[float] = []
        done = anyio.Event()

        async def teacher() -> None:
            for row in tests[teaches:]:
                await call("teach", {"text": row["text"], "labels": {"banking77": row["label"]}})
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(teacher)
            tg.start_soon(probe_for, 20, busy)
        status = json.loads((await client.read_resource("latent://status")).contents[0].text)
    return {
        "teach_to_effect": {**stats(effect), "effect_seen_on_next_call": f"{seen}/{len(effect)}"},
        "evaluate_other_profile_quiet": stats(quiet),
        "evaluate_other_profile_while_teaching_and_refitting": stats(busy),
        "large_profile": status.get("profiles", {}).get("banking77"),
    }


async def startup(work: Path, banking: list[dict], hwu: list[dict], repeat: int = 1) -> dict:
    big_rows = [r for r in banking if r["split"] == "train"] + [r for r in hwu if r["split"] == "train"]
    out = {}
    for case, with_big in (("small only", False), ("with a 15,000-exemplar unfitted profile", True)):
        profiles = work / f"profiles-startup-{int(with_big)}"
        profiles.mkdir(parents=True, exist_ok=True)
        write(profiles, "mood", SMALL)
        if with_big:
            labels = grouped(big_rows[: len(big_rows)], None)
            rows = [(k, t) for k, texts in labels.items() for t in texts][:15_000]
            big: dict[str, list[str]] = {}
            for label, text in rows:
                big.setdefault(label, []).append(text)
            write(profiles, "big", big)
        data = work / f"data-startup-{int(with_big)}-{time.time_ns()}"  # fresh: nothing fitted
        # Fit the small profile once beforehand, as a server that ran before would have: startup then measures
        # what the large profile costs the others, not the small profile's own first fit.
        async with Client(params(data, profiles), mode="legacy", read_timeout_seconds=600) as client:
            await client.call_tool("evaluate", {"text": "warm", "profiles": ["mood"]})
        starts = []
        for _ in range(repeat):  # each start finds the large profile unfitted: its fit never finishes in the start
            t0 = time.monotonic()
            async with Client(
                params(data, profiles, profile_wait_seconds="60"), mode="legacy", read_timeout_seconds=600
            ) as client:
                await client.list_tools()
                listed = time.monotonic() - t0
                small = await client.call_tool("evaluate", {"text": "what a lovely surprise", "profiles": ["mood"]})
                answered = time.monotonic() - t0
                entry = {
                    "tools_list_s": round(listed, 2),
                    "small_profile_verdict_s": round(answered, 2),
                    "small_profile_error": small.is_error,
                    "load_average": round(os.getloadavg()[0], 2),
                }
                if with_big:
                    pending = await client.call_tool("evaluate", {"text": "card arrival", "profiles": ["big"]})
                    entry["large_profile_answer"] = pending.content[0].text[:160]
            starts.append(entry)
        out[case] = {
            "tools_list_s": statistics.median(e["tools_list_s"] for e in starts),
            "small_profile_verdict_s": statistics.median(e["small_profile_verdict_s"] for e in starts),
            "small_profile_error": any(e["small_profile_error"] for e in starts),
            **({"large_profile_answer": starts[-1]["large_profile_answer"]} if with_big else {}),
            "starts": starts,
        }
    return out


async def run(args: argparse.Namespace) -> dict:
    data = Path(args.data)
    banking = read_rows(data / "banking77" / "banking77.jsonl")
    hwu = read_rows(data / "hwu64" / "hwu64.jsonl")
    work = Path(args.work)
    load = os.getloadavg()
    result = {"startup": await startup(work, banking, hwu, args.repeat)}
    if args.only != "startup":
        result.update(await teach_and_isolation(work, banking, args.teaches))
    result["load_average"] = {"before": [round(x, 1) for x in load], "after": [round(x, 1) for x in os.getloadavg()]}
    result["cpus"] = os.cpu_count()
    return result


def markdown(r: dict) -> str:
    lines = []
    if "teach_to_effect" in r:
        t, q, b = (
            r["teach_to_effect"],
            r["evaluate_other_profile_quiet"],
            r["evaluate_other_profile_while_teaching_and_refitting"],
        )
        lines += [
            "| measurement | p50 ms | p99 ms | max ms | n |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| teach-to-effect, 10,003-exemplar 77-label profile (teach + next evaluate; effect seen "
            f"{t['effect_seen_on_next_call']}) | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | {t['max_ms']:.1f} "
            f"| {t['n']} |",
            f"| evaluate by handle, another profile, quiet | {q['p50_ms']:.1f} | {q['p99_ms']:.1f} "
            f"| {q['max_ms']:.1f} | {q['n']} |",
            f"| same, while the large profile is taught and refitted | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
            f"{b['max_ms']:.1f} | {b['n']} |",
            "",
        ]
    lines += [
        "| startup (median of each start) | tools/list s | small profile's first verdict s | starts |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case, s in r["startup"].items():
        lines.append(f"| {case} | {s['tools_list_s']} | {s['small_profile_verdict_s']} | {len(s.get('starts', [s]))} |")
    lines += [
        "",
        f"{r['cpus']} CPUs shared with other work: load average {r['load_average']['before'][0]} before, "
        f"{r['load_average']['after'][0]} after.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/bench-learning", help="kept between runs (the large fit)")
    parser.add_argument("--out", default="bench-learning-out")
    parser.add_argument("--teaches", type=int, default=40)
    parser.add_argument("--only", choices=["startup"], help="measure only this part")
    parser.add_argument("--repeat", type=int, default=1, help="starts per startup case (the median is reported)")
    args = parser.parse_args()
    result = anyio.run(run, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_learning.json").write_text(json.dumps(result, indent=2))
    (out / "bench_learning.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
