#!/usr/bin/env python3
"""Does int8 cost quality? The same harness (`mcp-latent profiles build` + `profiles eval`) on BANKING77 and HWU64,
once per embedding path, each in its own data dir; writes a markdown table of closed-set accuracy.

    .venv/bin/python tools/int8_quality.py [--out int8-out] [--paths onnx,onnx-int8] [--sets banking77,hwu64]
        [--data ../shared/data]

The torch path gives the fp32 ONNX path's vectors to cosine >= 0.999999 (tests/test_onnx_embedder.py), so
`onnx` stands for both unless `torch` is listed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
PATHS = {
    "torch": {"MCP_LATENT_EMBED_BACKEND": "torch"},
    "onnx": {"MCP_LATENT_EMBED_BACKEND": "onnx", "MCP_LATENT_ONNX_INT8": "false"},
    "onnx-int8": {"MCP_LATENT_EMBED_BACKEND": "onnx", "MCP_LATENT_ONNX_INT8": "true"},
}


def run(path: str, dataset: str, out: Path, data: Path) -> dict:
    work = out / f"{dataset}-{path}"
    env = {**os.environ, **PATHS[path], "MCP_LATENT_DATA_DIR": str(work / "data")}
    source = str(data / dataset / f"{dataset}.jsonl")
    exe = [sys.executable, "-m", "mcp_latent"]
    started = time.perf_counter()
    build = [*exe, "profiles", "build", "--from", source, "--name", dataset, "--split", "train"]
    subprocess.run(build, env=env, check=True, cwd=ROOT)
    evaluate = [*exe, "profiles", "eval", "--profile", dataset, "--from", source, "--split", "test"]
    subprocess.run([*evaluate, "--out", str(work / "eval"), "--no-baselines"], env=env, check=True, cwd=ROOT)
    summary = json.loads((work / "eval" / "summary.json").read_text())
    return {"accuracy": summary["accuracy"], "model": summary["fit"]["model"], "s": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "int8-out")
    parser.add_argument("--paths", default="onnx,onnx-int8")
    parser.add_argument("--sets", default="banking77,hwu64")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of <set>/<set>.jsonl (default ../shared/data)")
    args = parser.parse_args()
    paths, sets = args.paths.split(","), args.sets.split(",")
    results = {d: {p: run(p, d, args.out, args.data) for p in paths} for d in sets}
    (args.out / "int8_quality.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| data set | " + " | ".join(paths) + " | difference (last - first) |",
        "| --- |" + " ---: |" * (len(paths) + 1),
    ]
    for d, by_path in results.items():
        acc = [100 * by_path[p]["accuracy"] for p in paths]
        lines.append(f"| {d} | " + " | ".join(f"{a:.2f}" for a in acc) + f" | {acc[-1] - acc[0]:+.2f} |")
    table = "\n".join(lines)
    (args.out / "int8_quality.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
