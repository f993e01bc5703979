"""The shared profile cache and the wait bound (issue 21 item 1, issue 20's WAIT_CAP_SECONDS): fits of the files'
own exemplars go to the cache every data dir shares, taught fits stay in their data dir, data dirs with different
versions of a profile do not evict each other's fit, and no call waits past its bound whatever the estimate."""

from __future__ import annotations

import time

from conftest import FRUIT, TOOLS, HashingEmbedder, write_profile
from test_learning import GatedEmbedder

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings


def started(tmp_path, data_dir: str, profiles: str, embedder=None, **extra) -> LatentService:
    settings = Settings(
        data_dir=tmp_path / data_dir,
        profiles_dir=tmp_path / profiles,
        profile_cache_dir=tmp_path / "shared",
        builtin_profiles=False,
        **extra,
    )
    service = LatentService(settings, embedder=embedder or HashingEmbedder())
    service.start()
    return service


def test_the_default_profile_cache_is_the_users_not_the_data_dirs(monkeypatch, tmp_path):
    import mcp_latent.settings as settings_module

    monkeypatch.delenv("MCP_LATENT_PROFILE_CACHE_DIR")  # the conftest points every test's cache into tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    settings = settings_module.Settings(data_dir=tmp_path / "a")
    assert settings.profile_cache_dir == tmp_path / "xdg-cache" / "mcp-latent" / "profiles"
    assert settings_module.Settings(data_dir=tmp_path / "b").profile_cache_dir == settings.profile_cache_dir


def test_taught_fits_stay_in_their_data_dir_and_file_fits_are_shared(tmp_path):
    write_profile(tmp_path / "p", "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0")
    first = started(tmp_path, "one", "p")
    first.teach("kind", "fruit", text="mango papaya smoothie")
    assert first.wait_refitted(60)
    first.close()
    shared = sorted(p.name for p in (tmp_path / "shared").rglob("*.fit.npz"))
    assert len(shared) == 1  # the file's own fit; the taught one is not shared
    assert len(list((tmp_path / "one" / "cache" / "profiles").rglob("kind-*.fit.npz"))) <= 1
    second = started(tmp_path, "two", "p")
    assert second.live["kind"].taught == 0 and second.live["kind"].ready  # read the shared fit, fitted nothing
    assert sorted(p.name for p in (tmp_path / "shared").rglob("*.fit.npz")) == shared
    assert not list((tmp_path / "two").rglob("*.fit.npz"))
    second.close()


def test_data_dirs_with_different_versions_of_a_profile_keep_both_fits(tmp_path):
    write_profile(tmp_path / "p1", "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0")
    write_profile(tmp_path / "p2", "kind", {"fruit": FRUIT[:10], "tools": TOOLS}, extra="min_similarity = -1.0")
    started(tmp_path, "one", "p1").close()
    started(tmp_path, "two", "p2").close()
    assert len(list((tmp_path / "shared").rglob("kind-*.fit.npz"))) == 2  # the second did not delete the first's
    embedder = HashingEmbedder()
    again = started(tmp_path, "one", "p1", embedder)
    assert again.live["kind"].ready and embedder.calls == 0  # still cached: nothing embedded or fitted again
    again.close()


def test_a_call_never_waits_past_its_bound_even_when_the_estimate_says_soon(tmp_path):
    """A small profile (estimated to fit in well under a second) whose embedding hangs: the call gives up after
    `profile_wait_seconds` with a note. The old WAIT_CAP_SECONDS floor made it wait 300 s."""
    write_profile(
        tmp_path / "p", "slow", {"a": [f"hang alpha {i}" for i in range(6)], "b": [f"hang beta {i}" for i in range(6)]}
    )
    embedder = GatedEmbedder("hang")
    settings = Settings(
        data_dir=tmp_path / "d",
        profiles_dir=tmp_path / "p",
        profile_cache_dir=tmp_path / "shared",
        builtin_profiles=False,
        profile_wait_seconds=1.5,
    )
    service = LatentService(settings, embedder=embedder)
    service.start(fit_profiles=False)
    assert service.live["slow"].eta() < 1.5  # the estimate says it will be ready within the wait
    began = time.monotonic()
    made = service.handoff("a text to keep", evaluate=["slow"])
    took = time.monotonic() - began
    assert made["handle"] and made["verdicts"]["slow"]["fitting"].startswith("fitting, ready in about")
    assert took < 1.5 + 1.0, took
    embedder.gate.set()
    service.close()
