"""Isolation (issue 21 item 2): a bad profile file is skipped and named, the rest keeps working; an unusable data
dir stops `serve` before it starts, with the path and the fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import FRUIT, TOOLS, server_env, write_profile
from mcp import Client

from mcp_latent.errors import StoreError
from mcp_latent.server.tools import build_server
from mcp_latent.service.api import LatentService

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


BAD_FILES = {
    "syntax.toml": ("name = 'syntax'\n[[labels]\n", "TOML syntax"),
    "badval.toml": (
        'name = "badval"\ntarget_accuracy = 2\n[[labels]]\nname = "a"\nexamples = ["x"]\n'
        '[[labels]]\nname = "b"\nexamples = ["y"]\n',
        "target_accuracy",
    ),
    "nolabels.toml": ('name = "nolabels"\ndescription = "no labels at all"\n', "labels"),
    "wrongname.toml": (
        'name = "other"\n[[labels]]\nname = "a"\nexamples = ["x"]\n[[labels]]\nname = "b"\nexamples = ["y"]\n',
        "must match the file name",
    ),
}


def write_bad_files(directory):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (content, _) in BAD_FILES.items():
        (directory / name).write_text(content, encoding="utf-8")


async def test_bad_profile_files_are_skipped_and_each_is_named(settings, fake_embedder, fruit_tools_profile, caplog):
    write_bad_files(settings.user_profiles_dir)
    service = LatentService(settings, embedder=fake_embedder)
    service.start()
    service.wait_ready(5)  # used to raise "invalid profile .../badval.toml" and fail every tool
    try:
        async with Client(build_server(service=service), mode="legacy") as client:
            made = await client.call_tool("handoff", {"text": "apple banana cherry", "evaluate": ["kind"]})
            assert not made.is_error and made.structured_content["verdicts"]["kind"]["label"] == "fruit"
            listed = (await client.call_tool("profiles", {})).structured_content
            assert [p["name"] for p in listed["profiles"]] == ["kind"]
            skipped = {entry["file"]: entry["error"] for entry in listed["skipped"]}
            for name, (_, field) in BAD_FILES.items():
                path = str(settings.user_profiles_dir / name)
                assert field in skipped[path], skipped  # every bad file, with the field that is wrong
                assert any(path in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        assert len(service.status()["skipped_profiles"]) == len(BAD_FILES)
    finally:
        service.close()


def run_cli(*args, env=None):
    command = [sys.executable, "-m", "mcp_latent", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env or server_env())


def test_profiles_list_shows_what_loaded_and_what_was_skipped(settings):
    write_bad_files(settings.user_profiles_dir)
    write_profile(settings.user_profiles_dir, "kind", {"fruit": FRUIT, "tools": TOOLS})
    done = run_cli("profiles", "list", "--data-dir", str(settings.data_dir))
    assert done.returncode == 0, done.stderr  # something loaded (it exited 2 at the first bad file)
    assert "kind" in done.stdout and "risk" in done.stdout  # the user's good profile and the shipped ones
    for name, (_, field) in BAD_FILES.items():
        line = next(line for line in done.stdout.splitlines() if name in line)
        assert line.startswith("SKIPPED") and field in line


def test_a_bad_user_file_shadowing_a_shipped_profile_leaves_the_shipped_one(tmp_path):
    from mcp_latent.profiles.registry import ProfileRegistry

    (tmp_path / "risk.toml").write_text('name = "risk"\ntarget_accuracy = 7\n', encoding="utf-8")
    registry = ProfileRegistry(tmp_path)
    profiles = registry.load_all()
    assert profiles["risk"].builtin and "target_accuracy" in registry.skipped[tmp_path / "risk.toml"]


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_serve_refuses_an_unusable_data_dir_with_the_path_and_the_fix(tmp_path, where):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be", encoding="utf-8")
    data_dir = blocker if where == "file" else blocker / "data"
    done = run_cli("serve", "--data-dir", str(data_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(data_dir) in done.stderr and "--data-dir" in done.stderr and "retry" not in done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_serve_refuses_an_unwritable_data_dir(tmp_path):
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    try:
        done = run_cli("serve", "--data-dir", str(data_dir))
    finally:
        data_dir.chmod(0o755)
    assert done.returncode == 2 and str(data_dir) in done.stderr and "chmod" in done.stderr


def test_the_store_error_for_an_unusable_data_dir_names_it_and_does_not_say_retry(tmp_path):
    from mcp_latent.store.sqlite import SqliteStore

    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(StoreError) as raised:
        SqliteStore(blocker, 4, "test/model")
    assert str(blocker) in str(raised.value) and "retry" not in str(raised.value)
    assert "--data-dir" in str(raised.value)
