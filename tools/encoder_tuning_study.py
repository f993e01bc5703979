#!/usr/bin/env python3
"""Does fine-tuning the encoder on a profile's taught exemplars make the learning loop escalate less? An offline
replay of the stream protocol of tools/learning_curve.py, frozen MiniLM against MiniLM tuned during the stream.

    nice -n 10 .venv/bin/python tools/encoder_tuning_study.py --data ../shared/data/hwu64/hwu64.jsonl \
        --arms frozen,mnrl,setfit --seeds 0 --out tools/results/encoder_tuning

Protocol (the same seed exemplars and stream as learning_curve.py, `seed_and_stream`): a profile seeded with
`--seed-per-label` train rows per label, then `--stream` shuffled train rows; every unsure verdict is taught its gold
label. The decision code is the server's: the profile is a `service.live_profile.LiveProfile` (teach, the nudged
head, background refits with their recalibrations and the stream threshold, `_on_stream`) and every verdict is
`FittedProfile.verdict`, observed as `service.api` observes it. Two things differ from a served stream, both the
same for every arm: the background refit runs in step, after every `--refit-every` teaches (as on a quiet machine
where refits keep up; the run is deterministic), and vectors come from sentence-transformers (torch; the served
ONNX path gives the same vectors to cosine >= 0.99999).

Arms: `frozen` (the shipped all-MiniLM-L6-v2) and the tuning methods of tools/encoder_tuning_methods.py. At each
`--tune-at` item (default: after the first and second third) the encoder is tuned from the shipped model on every
exemplar known so far (seeds + taught), all exemplars are re-embedded with it and the profile recalibrated on them
(what swapping in a tuned snapshot would do); `frozen` recalibrates at the same items with its own vectors, so the
arms differ only in the encoder. Measured: escalated share (all, last third), answered agreement, training seconds
on this machine, the tuned copy's size; and, in hindsight, the last third's escalated share at the best single
threshold that still answers at >= 97% (comparing scorers at equal agreement).

Writes summary.json (after every arm, so a stopped run keeps what it did), summary.md, escalation.png and every
verdict in items-DATA-SEED-ARM.jsonl.gz.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from encoder_tuning_methods import METHODS, encode, size_mib, tune  # noqa: E402
from learning_curve import read_rows, seed_and_stream  # noqa: E402

from mcp_latent.judge.decision import OUT_OF_SCOPE  # noqa: E402
from mcp_latent.plotting import figure  # noqa: E402
from mcp_latent.profiles.fitter import ProfileFitter  # noqa: E402
from mcp_latent.profiles.registry import Profile  # noqa: E402
from mcp_latent.profiles.spec import ProfileSpec  # noqa: E402
from mcp_latent.service import live_profile as live_module  # noqa: E402
from mcp_latent.service import refit_pacer  # noqa: E402
from mcp_latent.service.live_profile import LiveProfile  # noqa: E402
from mcp_latent.settings import Settings  # noqa: E402

GOAL_AGREEMENT = 0.97  # the goal: <= 25% escalated in the last third at >= 97% answered agreement


class TableEmbedder:
    """An embedder over vectors computed beforehand (one encoder's), looked up by text."""

    def __init__(self, model_id: str, texts: list[str], vectors: np.ndarray):
        self.model_id = model_id
        self.dim = int(vectors.shape[1])
        self._rows = {text: vector for text, vector in zip(texts, vectors, strict=True)}

    def embed(self, texts) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return np.stack([self._rows[text] for text in texts]).astype(np.float32)


class SteppedProfile(LiveProfile):
    """The server's LiveProfile, its background refit run in step (`refit_now`) instead of on a thread."""

    def _schedule_refit(self) -> None:
        with self._lock:
            self._refit_pending = True

    def refit_now(self) -> None:
        """What the refit thread does for the teaches so far (head refit, recalibration when due, stream threshold)."""
        self._refit_loop()

    def swap(self, embedder: TableEmbedder) -> None:
        """Re-embed every exemplar with another encoder and recalibrate on them (the snapshot a tuned encoder
        would be swapped in with); the stream's record of verdicts and spot checks carries over, as it does over
        any recalibration."""
        self.refit_now()
        current = self.snapshot
        texts, y = list(current.texts), np.array(current.y)
        self._fitter.embedder = embedder
        fitted = self._fit(embedder.embed(texts), texts, y, None)
        with self._lock:
            self._calibration.calibrated(len(y), fitted.calibration.c)
            self._calibration.tried_n = len(y)
            self.snapshot = self._on_stream(fitted)


def at_agreement(items: list[dict], target: float) -> float | None:
    """Escalated share at the lowest single threshold on the served p whose answers are right >= target (hindsight;
    cut-offs as out of scope stay escalated); None when no threshold gets there."""
    eligible = sorted((i for i in items if i["reason"] != OUT_OF_SCOPE), key=lambda i: -i["p"])
    right, best = 0, None
    for k, item in enumerate(eligible, start=1):
        right += item["best"] == item["gold"]
        if right / k >= target:
            best = k
    return None if best is None else 1 - best / len(items)


def summarize(items: list[dict], window: int) -> dict:
    def stats(part: list[dict]) -> dict:
        answered = [i for i in part if i["label"] is not None]
        return {
            "items": len(part),
            "escalated": float(np.mean([i["label"] is None for i in part])),
            "answered_agreement": float(np.mean([i["label"] == i["gold"] for i in answered])) if answered else None,
        }

    last = items[-(len(items) // 3) :]
    return {
        "all": stats(items),
        "last_third": {**stats(last), "escalated_at_97_hindsight": at_agreement(last, GOAL_AGREEMENT)},
        "windows": [
            float(np.mean([i["label"] is None for i in items[k : k + window]])) for k in range(0, len(items), window)
        ],
    }


def replay(seed: dict[str, list[str]], stream: list[dict], arm: str, base, frozen: TableEmbedder, args, bar) -> dict:
    """One arm over the stream; returns its summary (per-item verdicts under `items`)."""
    work = Path(tempfile.mkdtemp(prefix="encoder-tuning-"))
    labels = sorted(seed)
    spec = ProfileSpec.model_validate(
        {
            "name": "learner",
            "target_accuracy": args.target_accuracy,
            "labels": [{"name": label, "examples": seed[label]} for label in labels],
        }
    )
    fitter = ProfileFitter(work / "cache", frozen)
    window = Settings().stream_calibration_window
    live = SteppedProfile(Profile(spec, work / "learner.toml", False), fitter, None, [], 1.0, window)
    live.ensure_fitted()
    embedder, items, taught, tunes = frozen, [], 0, []
    refit_seconds, tune_at = 0.0, set(args.tune_at)
    for n, row in enumerate(stream):
        if n in tune_at:
            current = live.snapshot
            started = time.monotonic()
            info: dict = {"item": n, "exemplars": current.n}
            if arm == "frozen":
                embedder = frozen
            else:
                bar.set_postfix_str(f"tuning {arm} on {current.n} exemplars")
                result = tune(
                    base, list(current.texts), np.array(current.y), arm, epochs=args.epochs, lr=args.lr,
                    max_seconds=args.max_train_seconds, seed=args.train_seed,
                )  # fmt: skip
                info.update(train_seconds=result.seconds, steps=result.steps, truncated=result.truncated)
                info["size_mib"] = size_mib(result.model)
                t0 = time.monotonic()
                texts = list(dict.fromkeys([*current.texts, *(r["text"] for r in stream[n:])]))
                embedder = TableEmbedder(f"tuned-{arm}-{n}", texts, encode(result.model, texts))
                info["embed_seconds"] = time.monotonic() - t0
            live.swap(embedder)
            info["swap_seconds"] = time.monotonic() - started
            info["threshold"] = list(live.snapshot.threshold(True))
            tunes.append(info)
        text, gold = row["text"], row["label"]
        vector = embedder.embed([text])[0]
        verdict = live.snapshot.verdict(vector, text)
        p, best = verdict.model or (verdict.p, verdict.best)
        live.stream.observe(vector, p, verdict.reason != OUT_OF_SCOPE, best)
        items.append(
            {"gold": gold, "label": verdict.label, "best": verdict.best, "p": verdict.p, "reason": verdict.reason}
        )
        if verdict.unsure:
            live.teach(gold, text, vector)
            taught += 1
            if taught % args.refit_every == 0:
                t0 = time.monotonic()
                live.refit_now()
                refit_seconds += time.monotonic() - t0
        bar.update(1)
        if (n + 1) % args.window == 0:
            bar.set_postfix_str(f"{arm}: escalated {np.mean([i['label'] is None for i in items[-args.window :]]):.0%}")
    out = summarize(items, args.window)
    out.update(
        arm=arm,
        taught=taught,
        exemplars=live.snapshot.n,
        refits=live.refits,
        refit_seconds=refit_seconds,
        tunes=tunes,
        final_threshold=list(live.snapshot.threshold(True)),
        items=items,
    )
    return out


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return "unknown"


def markdown(summary: dict) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        "| data | seed | arm | escalated last third | agreement last third | agreement all | "
        "escalated last third at 97% (hindsight) | train s (per tune) | size MiB |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for run in summary["runs"]:
        last = run["last_third"]
        train = " + ".join(f"{t['train_seconds']:.0f}" for t in run["tunes"] if "train_seconds" in t) or "0"
        size = next((f"{t['size_mib']:.0f}" for t in run["tunes"] if "size_mib" in t), "0 (shipped)")
        lines.append(
            f"| {run['data']} | {run['seed']} | {run['arm']} | {pct(last['escalated'])} | "
            f"{pct(last['answered_agreement'])} | {pct(run['all']['answered_agreement'])} | "
            f"{pct(last['escalated_at_97_hindsight'])} | {train} | {size} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    datasets = sorted({run["data"] for run in summary["runs"]})
    size = summary["args"]["window"]
    with figure(path, dpi=100, ncols=len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False) as (_, axes):
        for ax, data in zip(axes[0], datasets, strict=True):
            draw_arms(ax, data, [run for run in summary["runs"] if run["data"] == data], summary["args"], size)


def draw_arms(ax, data: str, runs: list[dict], args: dict, size: int) -> None:
    # Each arm is drawn over its own seeds (mean, min..max band); where those are not all of frozen's, frozen
    # over the same seeds is drawn beside it, so a curve is only ever compared on the same streams.
    drawn: set[tuple[str, tuple[int, ...]]] = set()
    for arm in dict.fromkeys(run["arm"] for run in runs):
        seeds = tuple(sorted(run["seed"] for run in runs if run["arm"] == arm))
        for name in [arm] if arm == "frozen" else ["frozen", arm]:
            if (name, seeds) in drawn or not any(run["arm"] == name and run["seed"] in seeds for run in runs):
                continue  # drawn, or an arm run without frozen (e.g. frozen+pairwise alone)
            drawn.add((name, seeds))
            curves = np.array([run["windows"] for run in runs if run["arm"] == name and run["seed"] in seeds])
            x = [(i + 1) * size for i in range(curves.shape[1])]
            style = "--" if name == "frozen" else "-o"
            label = f"{name} (seed{'s' * (len(seeds) > 1)} {','.join(map(str, seeds))})"
            ax.plot(x, curves.mean(axis=0), style, label=label, linewidth=2 if len(seeds) > 1 else 1)
            if len(curves) > 1:
                ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.12)
    for item in args["tune_at"]:
        ax.axvline(item, color="grey", linewidth=0.8, linestyle=":")
    ax.axhline(0.25, color="grey", linewidth=0.8, linestyle="-.")
    ax.set_title(f"{data}: escalated per {size} items (tuning at dotted lines)")
    ax.set_xlabel("stream items")
    ax.set_ylabel("escalated")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=[], help="labelled JSONL (text, label, split); repeat")
    parser.add_argument(
        "--combine", nargs="+", default=[], help="instead of running: merge these runs' summary.json into --out"
    )
    parser.add_argument("--arms", default="frozen,mnrl,setfit", help=f"frozen and any of {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0", help="shuffle seeds of the stream, comma separated")
    parser.add_argument("--out", default="encoder-tuning-out")
    parser.add_argument("--seed-per-label", type=int, default=5)
    parser.add_argument("--stream", type=int, default=3000)
    parser.add_argument("--tune-at", default="", help="stream items to tune at (default: after each third)")
    parser.add_argument("--refit-every", type=int, default=20, help="run the background refit after N teaches")
    parser.add_argument("--target-accuracy", type=float, default=0.975, help="as tools/learning_curve.py")
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-train-seconds", type=float, default=360.0, help="stop a training run at this")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (training and embedding)")
    parser.add_argument("--encoder", default="", help="sentence-transformers dir (default: the shipped MiniLM)")
    args = parser.parse_args()
    if args.combine:
        return combine([Path(d) for d in args.combine], Path(args.out))
    if not args.data:
        parser.error("--data is required (or --combine)")
    args.tune_at = [int(x) for x in args.tune_at.split(",") if x] or [args.stream // 3, 2 * args.stream // 3]
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a != "frozen" and a not in METHODS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from frozen, {', '.join(METHODS)}")
    return study(args, arms)


def combine(folders: list[Path], out: Path) -> int:
    """One table and plot for runs made separately (e.g. one process per data set); their arguments must agree."""
    parts = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    summary = {
        **parts[0],
        "runs": [run for part in parts for run in part["runs"]],
        "combined_from": [str(f) for f in folders],
    }
    summary["commits"] = sorted({part["commit"] for part in parts})
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(summary))
    plot(summary, out / "escalation.png")
    print(markdown(summary))
    return 0


def study(args: argparse.Namespace, arms: list[str]) -> int:
    import torch
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm

    from mcp_latent.embedding.model_source import shipped_model_path

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Refits run in step here: no debounce to wait out (the server's 0.2 s batches a burst of teaches).
    live_module.REFIT_DEBOUNCE_SECONDS = refit_pacer.REFIT_DEBOUNCE_SECONDS = 0.0
    source = args.encoder or str(shipped_model_path())
    base = SentenceTransformer(source, device="cpu", local_files_only=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": vars(args), "commit": commit(), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    summary["runs"] = []
    for data in args.data:
        train = [r for r in read_rows(Path(data)) if r.get("split") == "train"]
        name = Path(data).stem
        for seed in [int(s) for s in args.seeds.split(",")]:
            seeds, stream = seed_and_stream(train, set(), args.seed_per_label, args.stream, seed)
            texts = list(dict.fromkeys([t for group in seeds.values() for t in group] + [r["text"] for r in stream]))
            t0 = time.monotonic()
            frozen = TableEmbedder("frozen", texts, encode(base, texts))
            print(f"{name} seed {seed}: {len(texts)} texts embedded in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            for arm in arms:
                with tqdm(total=len(stream), desc=f"{name} s{seed} {arm}", file=sys.stderr) as bar:
                    started = time.monotonic()
                    run = replay(seeds, stream, arm, base, frozen, args, bar)
                run.update(data=name, seed=seed, seconds=time.monotonic() - started, load=os.getloadavg())
                with gzip.open(out / f"items-{name}-{seed}-{arm}.jsonl.gz", "wt", encoding="utf-8") as f:
                    f.writelines(json.dumps(item) + "\n" for item in run.pop("items"))
                summary["runs"].append(run)
                (out / "summary.json").write_text(json.dumps(summary, indent=2))
                print(markdown({"runs": [run]}), file=sys.stderr)
    summary["load_after"] = os.getloadavg()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(summary))
    plot(summary, out / "escalation.png")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
