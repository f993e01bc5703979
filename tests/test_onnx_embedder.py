"""The ONNX embedding path: cache keys, the same vectors and verdicts as torch, fallback, and a serving process
that never imports torch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, server_env

from mcp_latent.embedding import onnx_export
from mcp_latent.embedding.factory import load_embedder
from mcp_latent.embedding.model_source import resolve_model_source, variant_model_id
from mcp_latent.embedding.torch_backend import SentenceTransformerEmbedder
from mcp_latent.errors import ModelError
from mcp_latent.settings import Settings, default_model_cache_dir

# Varied on purpose: short, long past max_seq_length (truncation), empty, unicode, case, digits, punctuation.
TEXTS = [
    "skip the security review and deploy the untested payment migration to production on Friday night",
    "fix a typo in the onboarding email template and add a unit test for it",
    "my card never arrived",
    "",
    "a",
    "Ünïcödé, naïve café, emoji 🚀 and MIXED case",
    "Q3 revenue grew 12% while churn fell to 2.1% (see table 4)",
    " ".join(f"token{i}" for i in range(700)),
    "Why is my transfer still pending after 3 days???",
    "\t  leading and trailing whitespace \n",
]


def fake_model(directory: Path, pooling: dict | None = None) -> Path:
    """A directory shaped like a sentence-transformers model (no weights): enough for layout and cache keys."""
    (directory / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text('{"max_seq_length": 256, "do_lower_case": false}')
    pooling = pooling or {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (directory / "tokenizer.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(b"weights")
    return directory


# --- fast: cache keys and layout checks -----------------------------------------------------------------------


def test_cache_key_follows_model_files_id_and_variant(tmp_path):
    source = fake_model(tmp_path / "m")
    first = onnx_export.cache_dir_for(tmp_path / "cache", source, "org/model", int8=False)
    assert first == onnx_export.cache_dir_for(tmp_path / "cache", source, "org/model", int8=False)
    assert first != onnx_export.cache_dir_for(tmp_path / "cache", source, "org/model", int8=True)
    assert first != onnx_export.cache_dir_for(tmp_path / "cache", source, "org/other", int8=False)
    (source / "model.safetensors").write_bytes(b"other weights")  # a changed file: a new entry, never a stale one
    assert first != onnx_export.cache_dir_for(tmp_path / "cache", source, "org/model", int8=False)


def test_int8_vectors_get_their_own_model_id():
    assert variant_model_id("org/model", int8=False) == "org/model"
    assert variant_model_id("org/model", int8=True) != "org/model"


def test_only_mean_pooled_normalized_models_are_exported(tmp_path):
    assert onnx_export.sentence_transformers_layout(fake_model(tmp_path / "ok"))["max_seq_length"] == 256
    cls = fake_model(tmp_path / "cls", {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    with pytest.raises(onnx_export.ExportError, match="mean Pooling"):
        onnx_export.sentence_transformers_layout(cls)
    with pytest.raises(onnx_export.ExportError, match="not a local sentence-transformers"):
        onnx_export.sentence_transformers_layout(tmp_path)


def test_onnx_backend_refuses_other_models():
    with pytest.raises(ModelError, match="only the shipped default model"):
        load_embedder("some/other-model", "cpu", 1, 8, backend="onnx")


def test_model_cache_dir_follows_xdg_and_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    assert default_model_cache_dir() == tmp_path / "xdg-cache" / "mcp-latent" / "models"
    monkeypatch.setenv("MCP_LATENT_MODEL_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert Settings().model_cache_dir == tmp_path / "elsewhere"


# --- real model ---------------------------------------------------------------------------------------------

shipped = pytest.mark.skipif(
    not Path(resolve_model_source("")[0]).is_dir(), reason="the shipped model package is not installed"
)


@pytest.fixture(scope="module")
def export_dir() -> Path:
    """The fp32 export in the real cache (made by `tools/dev.sh setup`; made here if missing)."""
    source, model_id = resolve_model_source("")
    return onnx_export.ensure_export(Path(source), model_id, default_model_cache_dir(), int8=False)


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    source, model_id = resolve_model_source("")
    return SentenceTransformerEmbedder(source, model_id, threads=2)


@shipped
@pytest.mark.e2e
def test_onnx_vectors_match_torch(export_dir, torch_embedder):
    from mcp_latent.embedding.onnx_backend import OnnxEmbedder

    onnx = OnnxEmbedder(export_dir, threads=2, batch_size=4)  # batches of 4: padding inside a batch is exercised
    assert onnx.model_id == torch_embedder.model_id and onnx.dim == torch_embedder.dim == 384
    reference = torch_embedder.embed(TEXTS)
    together = onnx.embed(TEXTS)
    one_by_one = np.concatenate([onnx.embed([t]) for t in TEXTS])
    for vectors in (together, one_by_one):
        assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosine = (reference * vectors).sum(axis=1)
        assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(6), strict=True))
    assert onnx.embed([]).shape == (0, 384)


@shipped
@pytest.mark.e2e
def test_verdicts_equal_on_both_paths(export_dir, torch_embedder, tmp_path, warm_profile_cache):
    """Both paths judge with the same fitted profiles (the fit cache is keyed by model, not backend, as a server
    that switches paths finds it), so any difference in a verdict comes from the query's vector. When each path
    fitted the ~6,000 shipped exemplars itself, tiny vector differences moved risk's cross-validated threshold
    (0.830 vs 0.816) across a test text at p 0.82: a fit's sensitivity, not the embedding path's."""
    from mcp_latent.embedding.onnx_backend import OnnxEmbedder
    from mcp_latent.service.api import LatentService

    verdicts = []
    for name, embedder in (("torch", torch_embedder), ("onnx", OnnxEmbedder(export_dir, threads=2))):
        settings = Settings(data_dir=tmp_path / name, profile_cache_dir=warm_profile_cache)
        service = LatentService(settings, embedder=embedder)
        service.start()
        service.wait_ready(300)
        try:
            verdicts.append(
                [service.evaluate(text=t, profiles=["risk", "roi", "category"])["verdicts"] for t in TEXTS if t]
            )
        finally:
            service.close()
    by_torch, by_onnx = verdicts
    for text, a, b in zip(TEXTS, by_torch, by_onnx, strict=False):
        for profile in a:
            assert a[profile]["label"] == b[profile]["label"], (text, profile, a[profile], b[profile])
            assert a[profile].get("unsure") == b[profile].get("unsure"), (text, profile)
            # p is reported to 2 decimals: a difference in the 4th decimal may round one step apart.
            assert abs(a[profile]["p"] - b[profile]["p"]) <= 0.0101, (text, profile, a[profile], b[profile])


@shipped
@pytest.mark.e2e
def test_failed_export_falls_back_to_torch_with_a_log_line(monkeypatch, tmp_path, caplog):
    def broken(*args, **kwargs):
        raise onnx_export.ExportError("exporter packages missing")

    monkeypatch.setattr(onnx_export, "ensure_export", broken)
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder("", "cpu", 2, 16, cache_dir=tmp_path)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert "ONNX path unavailable (exporter packages missing); embedding with torch" in caplog.text
    with pytest.raises(ModelError, match="ONNX embedding path is unavailable"):
        load_embedder("", "cpu", 2, 16, backend="onnx", cache_dir=tmp_path)


@shipped
@pytest.mark.e2e
def test_export_on_first_use_writes_the_cache_once(tmp_path):
    """A cold cache: the first load exports (in a child process), the second finds it; vectors as torch's."""
    started = time.perf_counter()
    embedder = load_embedder("", "cpu", 2, 16, backend="onnx", cache_dir=tmp_path / "cache")
    assert embedder.backend == "onnxruntime"
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and onnx_export.is_complete(entries[0]), entries
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["min_probe_cosine"] >= 0.999 and manifest["max_seq_length"] == 256
    # The weights sit beside the graph (a faster session load), readable by other users of the cache.
    weights = entries[0] / onnx_export.WEIGHTS_FILE
    assert weights.stat().st_size > 80e6 > (entries[0] / "model.onnx").stat().st_size
    assert weights.stat().st_mode & 0o044 == 0o044
    mtime = (entries[0] / "model.onnx").stat().st_mtime_ns
    load_embedder("", "cpu", 2, 16, backend="onnx", cache_dir=tmp_path / "cache")
    assert (entries[0] / "model.onnx").stat().st_mtime_ns == mtime, "a warm cache must not export again"
    logging.getLogger(__name__).info("export on first use took %.1f s", time.perf_counter() - started)


BLOCK = "raise ImportError('blocked by the test: the serving path must not import {name}')\n"


@shipped
@pytest.mark.e2e
def test_serving_process_answers_without_torch(export_dir, warm_profile_cache, tmp_path):
    """With torch, transformers and sentence-transformers unimportable, a spawned server still gives verdicts."""
    for name in ("torch", "transformers", "sentence_transformers"):
        (tmp_path / "blocked" / name).mkdir(parents=True)
        (tmp_path / "blocked" / name / "__init__.py").write_text(BLOCK.format(name=name))
    env = server_env()  # the session's shared profile cache: no fit under the client's request timeout
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blocked"), str(ROOT), env.get("PYTHONPATH", "")])
    script = f"""
import anyio, json, os, sys
from mcp import Client
from mcp.client.stdio import StdioServerParameters

async def main():
    # env passed on: the SDK's default environment would drop PYTHONPATH (and with it the blocking stubs).
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_latent", "serve", "--data-dir",
        {str(tmp_path / "data")!r}], env=dict(os.environ))
    async with Client(params, mode="legacy", read_timeout_seconds=300) as client:
        result = await client.call_tool("evaluate", {{"text": {TEXTS[0]!r}, "profiles": ["risk"]}})
        status = json.loads((await client.read_resource("latent://status")).contents[0].text)
        print(json.dumps({{"error": result.is_error, "text": result.content[0].text, "status": status}}))

anyio.run(main)
"""
    # The client runs in a child too: this test process has torch loaded, the server must not need it.
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert not reply["error"], reply
    assert json.loads(reply["text"])["verdicts"]["risk"]["label"] == "high"
    assert reply["status"].get("backend") == "onnxruntime", reply["status"]
    assert reply["status"]["model"] == resolve_model_source("")[1]  # the torch path's id: data dirs stay valid
