"""Install like other Python tools: the wheel built from this checkout goes into a fresh virtual environment (no
system site-packages, not this checkout), `mcp-latent setup` prepares it (ONNX export, profile fits) and the
installed `mcp-latent serve` answers the official MCP client over stdio at once.

The fresh environment is filled by uv when it is installed (about a minute; pip takes ~5 on 2 loaded cores), with
the CPU torch wheel from wherever this machine's pip finds it (its find-links), else by pip itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, server_env
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from test_e2e_stdio import RISKY

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(1500)]  # pip alone takes ~5 min here

TORCH = "torch==2.13.0"  # the CPU build, as tools/dev.sh installs it; an unpinned torch pulls a CUDA build


@pytest.fixture
def anyio_backend():
    return "asyncio"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def pip_find_links() -> list[str]:
    """This machine's pip find-links (where a local CPU torch wheel may lie), for uv, which does not read pip.conf."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    links = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links += [f"--find-links={link}" for link in value.strip("'\"").split()]
    return list(dict.fromkeys(links))


def uv() -> list[str] | None:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    return [found] if found else None


def fresh_install(wheel: Path, venv: Path) -> None:
    base_python = getattr(sys, "_base_executable", sys.executable)
    if uv_command := uv():
        run([*uv_command, "venv", "-q", "--python", base_python, str(venv)])
        run([*uv_command, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *pip_find_links(),
             TORCH, str(wheel)])  # fmt: skip
    else:
        run([base_python, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", TORCH])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])


async def test_the_wheel_installs_into_a_fresh_venv_and_serves_over_stdio(tmp_path, warm_profile_cache):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)])
    (wheel,) = (tmp_path / "dist").glob("mcp_latent-*.whl")
    venv = tmp_path / "venv"
    fresh_install(wheel, venv)
    exe = venv / "bin" / "mcp-latent"
    env = {k: v for k, v in server_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"MCP_LATENT_MODEL_CACHE_DIR": str(tmp_path / "models"), "HOME": str(tmp_path / "home")}
    version = run([str(exe), "--version"], env=env, cwd=tmp_path)
    assert version.stdout.strip() == "mcp-latent 0.1.0"
    where = run([str(venv / "bin" / "python"), "-c", "import mcp_latent; print(mcp_latent.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not this checkout

    # One command prepares it: the ONNX export into the (fresh) model cache, every shipped profile's fit.
    data = tmp_path / "d"
    setup = run([str(exe), "setup", "--data-dir", str(data)], env=env, cwd=tmp_path)
    assert "(onnxruntime)" in setup.stderr and "profile risk: fitted" in setup.stderr, setup.stderr
    assert any((tmp_path / "models").iterdir())  # the export was made by the installed package
    doctor = run([str(exe), "doctor", "--json", "--quick", "--data-dir", str(data)], env=env, cwd=tmp_path)
    assert json.loads(doctor.stdout)["ok"]

    params = StdioServerParameters(command=str(exe), args=["serve", "--data-dir", str(data)], env=env, cwd=tmp_path)
    async with Client(params, mode="legacy") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"handoff", "evaluate", "teach", "profiles"} <= tools
        result = await client.call_tool("evaluate", {"text": RISKY, "profiles": ["risk"]})
        assert not result.is_error, result.content[0].text
        assert result.structured_content["verdicts"]["risk"]["label"] == "high"
