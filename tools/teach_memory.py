#!/usr/bin/env python3
"""Teach a user profile in-process at a steady rate and print the process's memory every 10 s: whether teaching
(and the background refits it starts) holds on to memory apart from the exemplars (docs/load-and-faults.md).

    .venv/bin/python tools/teach_memory.py [--rate 2] [--seconds 150] [--profile-cache DIR]

Each line: RssAnon, glibc's heap (`arena`, in use, free, mmapped blocks), Python threads, allocated blocks, and the
count of anonymous mappings with the most common sizes in MB (thread stacks: 8; BLAS buffers: 32; malloc arenas: 64).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_reliability import MOOD_PROFILE, proposal
from mallinfo import mallinfo_mb

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings


def status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def anonymous_mappings() -> tuple[int, list[tuple[int, int]]]:
    sizes: dict[int, int] = {}
    for line in open("/proc/self/maps"):
        parts = line.split()
        if len(parts) < 6:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            sizes[(end - start) >> 20] = sizes.get((end - start) >> 20, 0) + 1
    return sum(sizes.values()), sorted(sizes.items(), key=lambda kv: -kv[0] * kv[1])[:6]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2.0, help="teaches a second")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--profile-cache", default=str(Path(tempfile.gettempdir()) / "mcp-latent-bench-profiles"))
    args = parser.parse_args()

    def line(at: float) -> None:
        mb = mallinfo_mb(("arena", "uordblks", "fordblks", "hblkhd"))
        print(
            f"t={at:5.0f} anon={status_mb('RssAnon'):.1f} heap={mb['arena']} in_use={mb['uordblks']} "
            f"free={mb['fordblks']} mmapped={mb['hblkhd']} threads={threading.active_count()} "
            f"pyblocks={sys.getallocatedblocks()} anon_maps={anonymous_mappings()}",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        profiles = Path(tmp) / "profiles"
        profiles.mkdir()
        (profiles / "fuzzmood.toml").write_text(MOOD_PROFILE, encoding="utf-8")
        settings = Settings(data_dir=Path(tmp) / "data", profiles_dir=profiles, profile_cache_dir=args.profile_cache)
        service = LatentService(settings)
        service.start()
        service.wait_ready(600)
        rng = random.Random(1)
        service.teach(profile="fuzzmood", label="happy", text=proposal(rng))
        time.sleep(5)  # the first refit and its imports, before the first line
        started, next_line, taught = time.monotonic(), 0.0, 0
        while time.monotonic() - started < args.seconds:
            if time.monotonic() - started >= next_line:
                line(time.monotonic() - started)
                next_line += 10
            service.teach(profile="fuzzmood", label=rng.choice(["happy", "sad"]), text=proposal(rng))
            taught += 1
            time.sleep(max(0.0, started + taught / args.rate - time.monotonic()))
        line(time.monotonic() - started)
        print("taught", taught)
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
