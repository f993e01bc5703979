#!/usr/bin/env python3
"""Why batch embedding is about 1.3x torch's throughput and not 1.8x: every way to run the shipped model that
installs offline here, measured in one run against the torch path, with its vectors checked against torch's.

    .venv/bin/python tools/batch_variants.py [--rounds 7] [--texts 500] [--out batch-out]

Per variant: server-style CPU time per call (64 proposal-length sentences, 64 short texts, 1 sentence; median of
interleaved rounds, all threads counted: on saturated cores throughput is cores divided by it), throughput
relative to torch, and the cosine of its vectors to torch's on BANKING77 and HWU64 test texts (a variant under
0.999 could not keep the data dir's model id). For the served graph it also reports where ONNX Runtime's time
goes (per-op profile) and the matrix products' rate in GFLOP per CPU second, against this CPU's fp32 FMA peak.

Variants: the served fp32 graph (as `OnnxEmbedder` runs it); ONNX Runtime's offline transformer optimizer (fused
Attention, SkipLayerNorm, BiasGelu); weight-and-activation 8-bit MatMulNBits (blockwise, VNNI; needs the
`onnx_ir` package); OpenVINO in bf16 (AVX512_BF16; needs the `openvino` package). Variants whose package is
missing are listed as skipped. Nothing here changes what the server runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.embedding.factory import load_embedder
from mcp_latent.embedding.model_source import resolve_model_source
from mcp_latent.embedding.onnx_backend import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE, OnnxEmbedder

PROPOSAL = (
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test to hit the "
    "quarter deadline; rollback is manual and takes about two hours."
)
# The same batches as tools/bench.py's "embed 64", "embed 64 sentences" and "embed 1".
WORKLOADS: dict[str, Callable[[int], list[str]]] = {
    "64 sentences": lambda i: [f"{PROPOSAL} batch {i} item {j}" for j in range(64)],
    "64 short texts": lambda i: [f"note {i} {j}" for j in range(64)],
    "1 sentence": lambda i: [f"{PROPOSAL} note {i}"],
}
MIN_COSINE = 0.999  # what a variant needs to keep the torch model id (onnx_export.MIN_FP32_COSINE)


def save_beside(model, directory: Path, source: Path) -> Path:
    """Write `model` as a servable directory (graph, raw weights beside it, manifest and tokenizer of `source`)."""
    import onnx

    directory.mkdir(parents=True)
    onnx.save_model(
        model,
        str(directory / MODEL_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=WEIGHTS_FILE,
        size_threshold=1024,
    )
    for name in (MANIFEST_FILE, TOKENIZER_FILE):
        (directory / name).write_bytes((source / name).read_bytes())
    return directory


def fused_graph(served: Path, work: Path) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((Path(resolve_model_source("")[0]) / "config.json").read_text())
    model = optimize_model(
        str(served / MODEL_FILE),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        opt_level=0,  # the fusions only; ONNX Runtime applies its own graph optimisations when it loads it
    )
    return save_beside(model.model, work / "fused", served)


def nbits8_graph(served: Path, work: Path, block: int) -> Path:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(served / MODEL_FILE)),
        algo_config=DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=8),
    )
    quantizer.process()
    return save_beside(quantizer.model.model, work / f"nbits8-b{block}", served)


class OpenVinoEmbedder:
    """The served graph compiled by OpenVINO's CPU plugin in bf16; same tokenizer, sorting and runs of 16."""

    def __init__(self, served: Path, threads: int = 2, batch_size: int = 16):
        import openvino as ov

        self.inner = OnnxEmbedder(served, threads=1, batch_size=batch_size)  # its tokenizer and batching
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.request = core.compile_model(
            core.read_model(str(served / MODEL_FILE)), "CPU", config
        ).create_infer_request()
        self.precision = str(self.request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT"))
        self.inner._session = self  # OnnxEmbedder._run calls session.run(None, feed)

    def run(self, _outputs, feed: dict) -> list[np.ndarray]:
        return [self.request.infer(feed)[0].copy()]

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)


def build_variants(
    served: Path, work: Path, only: str | None = None
) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """Constructors of every variant that can be built here, and why the others were skipped. The parent builds
    the graphs into `work`; a worker (`only`) finds them there."""
    variants: dict[str, Callable[[], object]] = {
        "torch (sentence-transformers), today's path": lambda: load_embedder("", "cpu", 2, 64, backend="torch"),
        "ONNX Runtime fp32, as served": lambda: OnnxEmbedder(served, threads=2),
        "ONNX Runtime fp32, 1 intra-op thread": lambda: OnnxEmbedder(served, threads=1),
    }
    skipped: dict[str, str] = {}
    try:
        path = work / "fused" if only else fused_graph(served, work)
        variants["ONNX Runtime fp32, transformer optimizer (fused)"] = lambda: OnnxEmbedder(path, threads=2)
    except Exception as exc:  # an optional measurement: say why and go on
        skipped["transformer optimizer"] = repr(exc)
    for block in (32, 128):
        try:
            path_b = work / f"nbits8-b{block}" if only else nbits8_graph(served, work, block)
            variants[f"ONNX Runtime 8-bit MatMulNBits, block {block}"] = lambda p=path_b: OnnxEmbedder(p, threads=2)
        except Exception as exc:
            skipped[f"8-bit MatMulNBits block {block}"] = repr(exc)
    try:
        import openvino  # noqa: F401

        variants["OpenVINO bf16"] = lambda: OpenVinoEmbedder(served)
    except ImportError as exc:
        skipped["OpenVINO bf16"] = repr(exc)
    if only:
        return {only: variants[only]}, skipped
    return variants, skipped


def reference_texts(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    for name in ("banking77", "hwu64"):
        rows = [json.loads(line) for line in (data / name / f"{name}.jsonl").read_text().splitlines() if line]
        texts += [str(r["text"]) for r in rows if str(r.get("split")) == "test"][:n]
    return texts


def matmul_profile(served: Path, texts: list[str]) -> dict:
    """Share of ONNX Runtime's kernel time per op type for one run of 16 sentences (one thread)."""
    import onnxruntime as ort

    embedder = OnnxEmbedder(served, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    options.log_severity_level = 3
    embedder._session = ort.InferenceSession(str(served / MODEL_FILE), options, providers=["CPUExecutionProvider"])
    for _ in range(4):
        embedder._run(texts[:16])
    events = json.loads(Path(embedder._session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: round(100 * us / total, 1) for op, us in per_op.most_common(6)}


def matmul_gflop(texts: list[str]) -> float:
    """Matrix-product work of one pass over `texts` (dense layers and attention, at the padded length of runs of
    16 texts sorted by length, as the served path runs them)."""
    from tokenizers import Tokenizer

    source = Path(resolve_model_source("")[0])
    config = json.loads((source / "config.json").read_text())
    d, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()
    lengths = sorted(len(e.ids) for e in tokenizer.encode_batch(texts))
    flop = 0.0
    for start in range(0, len(lengths), 16):
        run = lengths[start : start + 16]
        tokens = len(run) * max(run)
        flop += tokens * layers * 2 * (4 * d * d + 2 * d * ff + 2 * max(run) * d)
    return flop / 1e9


def serve_variant(name: str, served: str, work: str, connection) -> None:
    """A worker process per variant: CPU time is then per process, as a server's is (torch's OpenMP threads spin
    after each call and would otherwise be billed to whichever variant runs next)."""
    makers, _ = build_variants(Path(served), Path(work), only=name)
    embedder = makers[name]()
    connection.send("ready")
    while True:
        command, texts, reps = connection.recv()
        if command == "stop":
            return
        if command == "vectors":
            connection.send(np.asarray(embedder.embed(texts)))
            continue
        before = time.process_time()
        for k in range(reps):
            embedder.embed(texts[k])
        connection.send((time.process_time() - before) / reps)


def main() -> int:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--texts", type=int, default=500, help="test texts per data set for the cosine check")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "batch-out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    served = Path(load_embedder("", "cpu", 2, 64, backend="onnx").directory)  # exports once if needed
    work = Path(tempfile.mkdtemp(prefix="batch-variants-"))
    makers, skipped = build_variants(served, work)
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in makers:
        parent, child = context.Pipe()
        process = context.Process(target=serve_variant, args=(name, str(served), str(work), child), daemon=True)
        process.start()
        assert parent.recv() == "ready"
        workers[name] = parent
    torch_name = next(iter(workers))

    def ask(name: str, command: str, texts: list, reps: int = 1):
        workers[name].send((command, texts, reps))
        return workers[name].recv()

    texts = reference_texts(args.data, args.texts)
    reference = ask(torch_name, "vectors", texts)
    cosine = {}
    for name in workers:
        sims = (ask(name, "vectors", texts) * reference).sum(axis=1)
        cosine[name] = {"min": float(sims.min()), "p1": float(np.percentile(sims, 1))}

    cpu: dict[str, dict[str, list[float]]] = {name: {w: [] for w in WORKLOADS} for name in workers}
    for r in range(args.rounds):  # interleaved: each round samples every variant under the same machine state
        for workload, make_texts in WORKLOADS.items():
            reps = 10 if workload == "1 sentence" else 1
            batches = [make_texts(1000 * r + k) for k in range(reps)]
            for name in workers:
                cpu[name][workload].append(ask(name, "cpu", batches, reps))
    for name in workers:
        workers[name].send(("stop", [], 0))
    median = {name: {w: statistics.median(v) for w, v in per.items()} for name, per in cpu.items()}
    gflop = {w: matmul_gflop(make(0)) for w, make in WORKLOADS.items()}
    results = {
        "cosine": cosine,
        "cpu_ms": {n: {w: 1000 * s for w, s in per.items()} for n, per in median.items()},
        "throughput_vs_torch": {n: {w: median[torch_name][w] / s for w, s in per.items()} for n, per in median.items()},
        "gflop_per_cpu_s": {n: {w: gflop[w] / s for w, s in per.items()} for n, per in median.items()},
        "served_profile_pct": matmul_profile(served, WORKLOADS["64 sentences"](0)),
        "skipped": skipped,
        "rounds": args.rounds,
    }
    (args.out / "batch_variants.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "batch_variants.md").write_text(table + "\n")
    print(table)
    return 0


def markdown(r: dict) -> str:
    """Ratios against the served graph as well as torch: torch's CPU time swings with the machine's load (its OpenMP
    threads spin-wait at every parallel region), the ONNX variants' far less."""
    workloads = list(WORKLOADS)
    names = list(r["cpu_ms"])
    served = next(n for n in names if "as served" in n)
    head = "| variant | " + " | ".join(f"{w}: CPU ms (x torch, x served)" for w in workloads)
    lines = [head + " | GFLOP per CPU s (64 sentences) | cosine to torch, min (p1) |"]
    lines.append("| --- |" + " ---: |" * (len(workloads) + 2))
    for name in names:
        per = r["cpu_ms"][name]
        cells = [
            f"{per[w]:.1f} ({r['throughput_vs_torch'][name][w]:.2f}x, {r['cpu_ms'][served][w] / per[w]:.2f}x)"
            for w in workloads
        ]
        cos = r["cosine"][name]
        mark = "" if cos["min"] >= MIN_COSINE else " (< 0.999)"
        rate = r["gflop_per_cpu_s"][name]["64 sentences"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rate:.0f} | {cos['min']:.6f} ({cos['p1']:.6f}){mark} |")
    profile = ", ".join(f"{op} {pct}%" for op, pct in r["served_profile_pct"].items())
    lines += ["", f"Served graph, kernel time per op type (16 sentences, one thread): {profile}."]
    for name, why in r["skipped"].items():
        lines.append(f"Skipped {name}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
