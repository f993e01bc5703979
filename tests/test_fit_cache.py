"""One fit-cache folder and one model id for every command: `profiles list` and `profiles tune` used to look for fits
under `<data_dir>/cache/profiles` whatever `MCP_LATENT_PROFILE_CACHE_DIR` said (where `build` and the server write
them), and under the fp32 model id with `MCP_LATENT_ONNX_INT8` set, so they never found the fits the server made."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import FRUIT, ROOT, TOOLS, HashingEmbedder, write_profile

from mcp_latent.cli import main as cli
from mcp_latent.embedding.model_source import (
    HUB_FALLBACK_MODEL,
    configured_model_id,
    resolve_model_source,
    tries_onnx,
    variant_model_id,
)
from mcp_latent.profiles.fitter import ProfileFitter
from mcp_latent.profiles.registry import ProfileRegistry
from mcp_latent.settings import Settings

SHIPPED = Path(resolve_model_source("")[0]).is_dir()
needs_shipped_model = pytest.mark.skipif(not SHIPPED, reason="the shipped model package is not installed")


class NamedHashingEmbedder(HashingEmbedder):
    """The fake embedder under a real model's id: its fits land where that model's would."""

    def __init__(self, model_id: str):
        super().__init__()
        self.model_id = model_id


def store_fit(profiles_dir: Path, cache_dir: Path, model_id: str) -> None:
    """Fit the test profile `kind` into `cache_dir` under `model_id`, as `profiles build` or a server would."""
    profile = ProfileRegistry(profiles_dir, include_builtin=False).load_all()["kind"]
    ProfileFitter(cache_dir, NamedHashingEmbedder(model_id)).fitted(profile)


def listed(capsys, tmp_path: Path) -> dict:
    code = cli.main(["profiles", "list", "--json", "--profiles-dir", str(tmp_path / "p"), "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {p["name"]: p for p in json.loads(out)}


@pytest.fixture
def profile_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MCP_LATENT_BUILTIN_PROFILES", "false")
    return write_profile(tmp_path / "p", "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0").parent


@needs_shipped_model
def test_profiles_list_finds_fits_in_the_configured_cache_dir(tmp_path, capsys, monkeypatch, profile_dir):
    cache = tmp_path / "shared-cache"  # not under the data dir
    store_fit(profile_dir, cache, HUB_FALLBACK_MODEL)
    assert "coverage" not in listed(capsys, tmp_path)["kind"]  # the default cache dir holds no fit
    monkeypatch.setenv("MCP_LATENT_PROFILE_CACHE_DIR", str(cache))
    assert "coverage" in listed(capsys, tmp_path)["kind"]


@needs_shipped_model
def test_profiles_list_finds_int8_fits_under_the_int8_model_id(tmp_path, capsys, monkeypatch, profile_dir):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MCP_LATENT_PROFILE_CACHE_DIR", str(cache))
    store_fit(profile_dir, cache, HUB_FALLBACK_MODEL)  # an fp32 fit only
    monkeypatch.setenv("MCP_LATENT_ONNX_INT8", "true")
    assert "coverage" not in listed(capsys, tmp_path)["kind"]  # int8 vectors never read an fp32 fit
    store_fit(profile_dir, cache, variant_model_id(HUB_FALLBACK_MODEL, int8=True))
    assert "coverage" in listed(capsys, tmp_path)["kind"]


@needs_shipped_model
def test_profiles_tune_reuses_the_fit_in_the_configured_cache_dir_without_the_model(
    tmp_path, capsys, monkeypatch, profile_dir
):
    cache = tmp_path / "shared-cache"
    monkeypatch.setenv("MCP_LATENT_PROFILE_CACHE_DIR", str(cache))
    monkeypatch.setenv("MCP_LATENT_ONNX_INT8", "true")
    store_fit(profile_dir, cache, variant_model_id(HUB_FALLBACK_MODEL, int8=True))

    def no_model(settings):
        raise AssertionError("tune loaded the model although a stored fit was there")

    monkeypatch.setattr("mcp_latent.embedding.factory.load_configured_embedder", no_model)
    argv = ["profiles", "tune", "--profile", "kind", "--target-accuracy", "0.9", "--profiles-dir", str(profile_dir)]
    code = cli.main([*argv, "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "no refit" in err, err
    assert "target_accuracy = 0.9" in (profile_dir / "kind.toml").read_text()


@needs_shipped_model
def test_the_configured_model_id_is_the_loaded_embedders(tmp_path):
    from mcp_latent.embedding.factory import load_configured_embedder

    settings = Settings(data_dir=tmp_path)
    assert configured_model_id(settings) == load_configured_embedder(settings).model_id


def test_the_int8_id_applies_only_where_onnx_serves(tmp_path):
    ids = {
        (backend, int8): configured_model_id(Settings(data_dir=tmp_path, embed_backend=backend, onnx_int8=int8))
        for backend in ("auto", "torch")
        for int8 in (False, True)
    }
    base = resolve_model_source("")[1]
    assert ids[("torch", True)] == ids[("torch", False)] == ids[("auto", False)] == base
    assert ids[("auto", True)] == (variant_model_id(base, True) if SHIPPED else base)
    assert not tries_onnx("some/other-model", "auto", "cpu") and not tries_onnx("", "auto", "cuda")


def test_the_fit_cache_folder_and_the_model_id_are_computed_in_one_place_each():
    # Four places built the fit-cache path and three the model id; they drifted (the two defects above).
    package = ROOT / "mcp_latent"
    sources = {p.relative_to(package).as_posix(): p.read_text(encoding="utf-8") for p in package.rglob("*.py")}
    readers = {name for name, text in sources.items() if re.search(r"\.profile_cache_dir\b", text)}
    assert readers <= {"settings.py", "profiles/fitter.py"}, readers
    assert not {name for name, text in sources.items() if '"cache" / "profiles"' in text} - {"settings.py"}
    suffixers = {name for name, text in sources.items() if "INT8_SUFFIX" in text or "resolve_model_source(" in text}
    assert suffixers <= {"embedding/model_source.py", "embedding/factory.py", "embedding/onnx_export.py"}, suffixers
