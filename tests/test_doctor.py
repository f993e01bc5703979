"""`mcp-latent doctor` run as a user would: a healthy setup passes (the ONNX export's vectors compared with torch's),
and each broken piece is reported with its fix and a non-zero exit, without stopping the other checks."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import server_env
from test_e2e_stdio import server_command


def doctor(*args: str, env: dict | None = None) -> tuple[int, dict]:
    done = subprocess.run(
        [*server_command(), "doctor", "--json", *args], env=env or server_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@pytest.mark.e2e
def test_a_healthy_setup_passes_and_the_onnx_vectors_match_torch(tmp_path, warm_profile_cache):
    code, report = doctor("--data-dir", str(tmp_path / "d"))
    checks = by_name(report)
    assert code == 0 and report["ok"], report
    assert "vectors match torch's" in checks["onnx export"]["detail"]
    assert checks["profile cache"]["status"] == "ok"  # the shared cache holds every shipped profile's fit
    assert checks["data dir"]["status"] == "ok" and "writable" in checks["data dir"]["detail"]
    assert checks["packages"]["status"] == "ok" and "prometheus-client" in checks["packages"]["detail"]


def test_each_problem_is_named_with_its_fix_and_the_exit_code_says_so(tmp_path):
    data = tmp_path / "d"
    (data / "profiles").mkdir(parents=True)
    (data / "profiles" / "broken.toml").write_text('name = "broken"\n[[labels]]\nname = 3\n', encoding="utf-8")
    (data / "latent.db").write_bytes(b"this is not a database" * 100)
    env = server_env() | {"MCP_LATENT_PROFILE_CACHE_DIR": str(tmp_path / "empty-cache")}
    code, report = doctor("--data-dir", str(data), "--quick", "--transport", "http", "--host", "0.0.0.0", env=env)
    checks = by_name(report)
    assert code == 1 and not report["ok"]
    assert (
        checks["profile broken.toml"]["status"] == "fail" and "broken.toml" in checks["profile broken.toml"]["detail"]
    )
    assert checks["profile files"]["detail"].startswith("3 valid of 4")  # the shipped ones still count
    assert checks["store"]["status"] == "fail" and checks["store"]["fix"]
    assert checks["token"]["status"] == "fail" and "MCP_LATENT_TOKEN_FILE" in checks["token"]["fix"]
    assert checks["data dir"]["status"] == "ok"  # the other checks still ran and passed
    assert "--quick" in checks["onnx export"]["detail"] or checks["onnx export"]["status"] == "warn"


def test_a_corrupt_page_fails_integrity_check_and_a_full_disk_fails_free_space(tmp_path):
    import sqlite3

    data = tmp_path / "d"
    data.mkdir()
    db = sqlite3.connect(data / "latent.db")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(400)])
    db.execute("CREATE INDEX tx ON t (x)")
    db.commit()
    db.close()
    raw = bytearray((data / "latent.db").read_bytes())
    raw[4096 * 3 + 100 : 4096 * 3 + 400] = b"\xff" * 300  # scribble over a b-tree page
    (data / "latent.db").write_bytes(bytes(raw))
    code, report = doctor("--data-dir", str(data), "--quick", "--min-free-mb", str(10**9))
    checks = by_name(report)
    assert code == 1
    assert checks["store"]["status"] == "fail", checks["store"]
    assert checks["data dir"]["status"] == "fail" and "MB free" in checks["data dir"]["detail"]


def test_text_output_prints_each_fix(tmp_path):
    done = subprocess.run(
        [*server_command(), "doctor", "--quick", "--data-dir", str(tmp_path / "d"), "--transport", "http",
         "--host", "0.0.0.0"],
        env=server_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "[FAIL] token:" in done.stdout and "fix: set MCP_LATENT_TOKEN_FILE" in done.stdout


def test_postgres_store_reachable_with_pgvector_and_its_schema_version(tmp_path, postgres, pg_schema, fake_embedder):
    """A real PostgreSQL + pgvector: reachable, pgvector's version and the schema version once a server migrated it;
    an unreachable URL fails with what to check."""
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings
    from mcp_latent.store.postgres_migrations import SCHEMA_VERSION

    flags = ["--quick", "--data-dir", str(tmp_path / "d"), "--store-url", postgres.url]
    env = server_env() | {"MCP_LATENT_STORE_SCHEMA": pg_schema}
    _, fresh = doctor(*flags, env=env)
    assert (
        by_name(fresh)["store"]["status"] == "ok"
        and f"version 0 of {SCHEMA_VERSION}" in by_name(fresh)["store"]["detail"]
    )
    service = LatentService(
        Settings(data_dir=tmp_path / "d", store_url=postgres.url, store_schema=pg_schema, builtin_profiles=False),
        embedder=fake_embedder,
    )
    service.start()  # migrates the schema
    service.close()
    _, migrated = doctor(*flags, env=env)
    store = by_name(migrated)["store"]
    assert store["status"] == "ok" and "pgvector 0." in store["detail"], store
    assert f"version {SCHEMA_VERSION} of {SCHEMA_VERSION}" in store["detail"]

    code, down = doctor(
        "--quick", "--data-dir", str(tmp_path / "d"), "--store-url", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert code == 1 and by_name(down)["store"]["status"] == "fail"
    assert "unreachable" in by_name(down)["store"]["detail"] and "MCP_LATENT_STORE_URL" in by_name(down)["store"]["fix"]
