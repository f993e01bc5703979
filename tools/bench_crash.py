#!/usr/bin/env python3
"""kill -9 during writes from several processes on one data dir: does any acknowledged write get lost?

    .venv/bin/python tools/bench_crash.py [--rounds 20] [--writers 2] [--out crash-out]

Each round starts `--writers` processes on ONE data dir. Each opens the embedded store (random unit vectors, no
model: this measures the store), adds handoffs in batches of 1-3 (to a namespace all writers share and to its
own, with parents), teaches exemplars and searches, and prints one line per write only after the store returned
it (= acknowledged). At a random moment the parent kills every writer with SIGKILL, reopens the store and checks
every acknowledged handoff (readable in its namespace; `similar` finds it by its own vector) and every
acknowledged taught exemplar. The next round writes on top of the crashed state. Writes crash.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.store.sqlite import SqliteStore

DIM = 32
MODEL = "crash-bench"


def writer(data_dir: Path, name: str, seed: int) -> None:
    """Write until killed; a line on stdout is printed only after its write was acknowledged."""
    store = SqliteStore(data_dir, DIM, MODEL)
    rng = np.random.default_rng(seed)
    parent = None
    for i in range(10**9):
        rows = rng.normal(size=(int(rng.integers(1, 4)), DIM)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        namespace = "shared" if i % 2 else f"own-{name}"
        records = store.add(namespace, rows, [f"{name} {i}"] * len(rows), from_agent=name,
                            parent=parent if namespace != "shared" else None)  # fmt: skip
        if namespace != "shared":
            parent = records[-1].handle
        for record in records:
            print("h", record.namespace, record.handle, record.vector.tobytes().hex(), flush=True)
        if i % 7 == 0:
            taught = store.add_taught("crash", "a" if i % 2 else "b", f"{name} taught {i}", source=name)
            print("t", taught.id, taught.text, flush=True)
        if i % 5 == 0:
            store.similar("shared", rows[0], 5)  # keeps an index live in this process while it is killed


def check(data_dir: Path, handoffs: list[tuple[str, str, bytes]], taught: dict[int, str]) -> dict[str, int]:
    store = SqliteStore(data_dir, DIM, MODEL)
    try:
        lost = 0
        for namespace, handle, _ in handoffs:
            try:
                store.get(handle, namespace)
            except Exception:
                lost += 1
        misses = 0
        for namespace, handle, vector in random.Random(0).sample(handoffs, min(50, len(handoffs))):
            hits = store.similar(namespace, np.frombuffer(vector, dtype=np.float32), 1)
            misses += not hits or hits[0][0].handle != handle
        stored_taught = {t.id: t.text for t in store.taught(profile="crash")}
        lost_taught = sum(stored_taught.get(i) != text for i, text in taught.items())
        return {"lost_handoffs": lost, "lost_taught": lost_taught, "search_misses": misses}
    finally:
        store.close()


def run_round(data_dir: Path, writers: int, rng: random.Random) -> dict:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", str(data_dir), f"w{n}", str(rng.randrange(10**9))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    outputs: list[list[str]] = [[] for _ in procs]
    readers = [
        threading.Thread(target=lambda p=p, o=o: o.extend(p.stdout)) for p, o in zip(procs, outputs, strict=True)
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 120
    while min(len(o) for o in outputs) < 20 and time.monotonic() < deadline:  # every writer is writing by now
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a writer died: {[p.stderr.read()[-2000:] for p in procs if p.poll() is not None]}")
        time.sleep(0.01)
    time.sleep(rng.random() * 0.5)
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    handoffs, taught = [], {}
    for proc, reader, lines in zip(procs, readers, outputs, strict=True):
        proc.wait(30)
        reader.join(30)
        for line in lines:
            if not line.endswith("\n"):
                continue  # cut by the kill: its write was never acknowledged
            kind, *fields = line.rstrip("\n").split(" ", 3)
            if kind == "h":
                handoffs.append((fields[0], fields[1], bytes.fromhex(fields[2])))
            else:
                taught[int(fields[0])] = " ".join(fields[1:])
    started = time.perf_counter()
    result = check(data_dir, handoffs, taught)
    return {**result, "handoffs": len(handoffs), "taught": len(taught), "check_s": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("crash-out"))
    parser.add_argument("--writer", nargs=3, metavar=("DIR", "NAME", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(Path(args.writer[0]), args.writer[1], int(args.writer[2]))
        return 0
    rng = random.Random(12)
    data_dir = Path(tempfile.mkdtemp(prefix="latent-crash-"))
    rounds = []
    for number in range(1, args.rounds + 1):
        rounds.append(run_round(data_dir, args.writers, rng))
        print(f"round {number}: {json.dumps(rounds[-1])}", flush=True)
    totals = {key: sum(r[key] for r in rounds) for key in ("handoffs", "taught", "lost_handoffs", "lost_taught")}
    totals |= {"search_misses": sum(r["search_misses"] for r in rounds), "rounds": args.rounds}
    totals |= {"writers": args.writers, "rows_in_store": SqliteStore(data_dir, DIM, MODEL).count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crash.json").write_text(json.dumps({"totals": totals, "rounds": rounds}, indent=1))
    print(
        f"{args.rounds} rounds x {args.writers} writers killed with SIGKILL mid-write: "
        f"{totals['handoffs']} acknowledged handoffs, {totals['lost_handoffs']} lost; "
        f"{totals['taught']} acknowledged taught exemplars, {totals['lost_taught']} lost; "
        f"{totals['search_misses']} search misses"
    )
    return 1 if totals["lost_handoffs"] or totals["lost_taught"] or totals["search_misses"] else 0


if __name__ == "__main__":
    sys.exit(main())
