#!/usr/bin/env python3
"""What a profile's memory is fitted from: its close exemplar pairs (at least SHIFT_BAND similar), which of them
are minimal pairs (different labels), how far the profile's own model reads each pair apart (the guard's shift),
and the radius and limit fitted on them (`mcp_latent/judge/memory.py`); the file's `pair_examples` count.

    .venv/bin/python tools/memory_pairs.py risk roi [--profiles-dir profiles] [--show 40] [--cache DIR]

Fits exactly as the server does (LatentService -> ProfileFitter; `--cache` keeps the fits between runs).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--profiles-dir", type=Path, default=ROOT / "profiles")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-pairs-cache")
    parser.add_argument("--show", type=int, default=40, help="minimal pairs listed per profile")
    args = parser.parse_args()

    from mcp_latent.judge.memory_evidence import close_pairs
    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), profiles_dir=args.profiles_dir, builtin_profiles=False, profile_cache_dir=args.cache
        )
        service = LatentService(settings)
        service.start(fit_profiles=False)
        service.wait_ready()
        for name in args.names:
            fitted = service.fitted_profile(name)
            memory = fitted.memory
            labels = fitted.labels
            vectors, y, texts = np.asarray(fitted.vectors, dtype=np.float32), fitted.y, fitted.texts
            _, _, pairs, _ = close_pairs(vectors, y)
            print(f"\n## {name}: {fitted.n} exemplars")
            if memory is None or memory.close is None:
                print("memory unguarded or absent")
                continue
            close = memory.close
            same = close[:, 1].astype(bool)
            unordered = len(close) // 2
            print(
                f"close pairs {unordered} (minimal pairs {int((~same).sum()) // 2}); ordered: {len(close)}, "
                f"minimal {int((~same).sum())}; radius {memory.radius:.3f}, limit {memory.shift_limit:.2f}, "
                f"accuracy {memory.accuracy:.3f}, budgeted {memory.budgeted}"
            )
            shift = close[:, 2]
            print(
                "median shift: same-label pairs "
                f"{np.median(shift[same]) if same.any() else float('nan'):.2f}, minimal pairs "
                f"{np.median(shift[~same]) if (~same).any() else float('nan'):.2f}"
            )
            order = np.argsort(-pairs[:, 2])
            shown = 0
            for row in order:
                i, k, sim = int(pairs[row, 0]), int(pairs[row, 1]), pairs[row, 2]
                if y[i] == y[k] or i > k or shown >= args.show:
                    continue
                back = np.nonzero((pairs[:, 0] == k) & (pairs[:, 1] == i))[0]
                shown += 1
                print(
                    f"- {sim:.3f} shift {shift[row]:.2f}/{shift[back[0]]:.2f}: [{labels[y[i]]}] {texts[i][:90]!r} | "
                    f"[{labels[y[k]]}] {texts[k][:90]!r}"
                )
        service.close()


if __name__ == "__main__":
    main()
