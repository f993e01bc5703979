"""The README and docs/ stay true: generated pages are current, and every fenced block is exercised.

- `bash`/`sh`: each `mcp-latent ...` command (also `.venv/bin/mcp-latent`, `python -m mcp_latent`, `tools/dev.sh
  serve`) parses with the real CLI parser; the cheap read-only ones are run; `tools/*.py` scripts exist and take the
  flags shown.
- `json`: parses; a client config names an `mcp-latent serve` command line that parses.
- `toml`: parses; a profile validates with `mcp_latent.profiles.spec`.
- `python`: equals a file in docs/snippets/, and those files run against a real server (tests at the end).
- `text`: example output, exempt. A block with no language fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_PROFILE_CACHE

from mcp_latent.cli.main import build_parser
from mcp_latent.settings import default_model_cache_dir

DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LANGUAGES = {"bash", "sh", "json", "python", "toml", "text", "yaml"}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
README_MAX_LINES = 250
# The model's ONNX export, as the spawned servers of tests/test_clients.py find it (read before isolated_env runs).
MODEL_CACHE = Path(os.environ.get("MCP_LATENT_MODEL_CACHE_DIR", str(default_model_cache_dir())))


def fenced_blocks(language: str | None = None) -> list[tuple[str, str]]:
    """(where, body) of every fenced block (of one language) in README.md and docs/*.md."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if language is None or match.group(1) == language or (language == "bash" and match.group(1) == "sh"):
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def ids(blocks: list[tuple[str, str]]) -> list[str]:
    return [where for where, _ in blocks]


# --- generated pages and sizes -------------------------------------------------------------------------------------


def load_gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current(capsys):
    gen_docs = load_gen_docs()
    generated_with = re.search(r"\(Python (\d+\.\d+)\)", (DOCS / "cli.md").read_text(encoding="utf-8")).group(1)
    if generated_with != gen_docs.PYTHON:  # argparse lays help out differently across Python versions
        pytest.skip(f"docs/cli.md was generated with Python {generated_with}, this is {gen_docs.PYTHON}")
    assert gen_docs.main(["--check"]) == 0, capsys.readouterr().err


def test_generated_pages_hold_every_setting_and_command():
    from mcp_latent.settings import Settings, markdown_table

    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert markdown_table() in configuration
    assert all(f"`MCP_LATENT_{name.upper()}`" in configuration for name in Settings.model_fields)
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in ("serve", "evaluate", "profiles build", "profiles tune", "namespaces drop", "postgres start"):
        assert f"## `mcp-latent {command}`" in cli


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES} (move detail to docs/)"


def test_every_block_names_its_language():
    untagged = [(where, lang) for where, lang in language_tags() if lang not in LANGUAGES]
    assert not untagged, f"blocks need one of {sorted(LANGUAGES)}: {untagged}"


def language_tags() -> list[tuple[str, str]]:
    tags = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            tags.append((f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1)))
    return tags


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def slugs(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text(encoding="utf-8")), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_relative_links_point_at_files_and_headings():
    broken = []
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = page.parent / target
            if not path.exists() or (anchor and path.suffix == ".md" and anchor[1:] not in slugs(path)):
                broken.append(f"{page.relative_to(ROOT)} -> {target}{anchor}")
    assert not broken, broken


# --- shell blocks ----------------------------------------------------------------------------------------------------

OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "2>", "2>&1"}
CHEAP = (["profiles", "list"], ["profiles", "check"], ["--version"])  # read files only: run for real


def shell_commands(body: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, comments dropped, split at operators."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in OPERATORS or set(token) <= set(";&|<>"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def strip_prefix(words: list[str]) -> list[str]:
    """Drop `VAR=value` assignments and wrappers (`nice -n 10`, `timeout N`, `umask`)."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    if words[:1] == ["timeout"]:
        words = words[2:]
    return words


def mcp_latent_args(words: list[str]) -> list[str] | None:
    """The arguments after the program when `words` runs mcp-latent, else None."""
    words = strip_prefix(words)
    if not words:
        return None
    program = Path(words[0]).name
    if program == "mcp-latent":
        return words[1:]
    if program.startswith("python") and words[1:3] == ["-m", "mcp_latent"]:
        return words[3:]
    if words[0].endswith("tools/dev.sh") and words[1:2] == ["serve"]:
        return words[1:]
    return None


def tool_script(words: list[str]) -> tuple[Path, list[str]] | None:
    """(script, its flags) when `words` runs one of tools/*.py, else None."""
    words = strip_prefix(words)
    if len(words) >= 2 and Path(words[0]).name.startswith("python") and words[1].startswith("tools/"):
        return ROOT / words[1], [w.split("=")[0] for w in words[2:] if w.startswith("--")]
    return None


SHELL_BLOCKS = fenced_blocks("bash")


def parses(args: list[str]) -> str | None:
    """None if the real CLI parser accepts `args`, else what it said."""
    parser = build_parser()
    parser.exit_on_error = False
    with contextlib.redirect_stdout(open(os.devnull, "w")), contextlib.redirect_stderr(open(os.devnull, "w")):
        try:
            parser.parse_args(args)
        except SystemExit as exc:  # --help and --version exit 0; a bad command line exits 2
            return None if exc.code == 0 else f"exit {exc.code}"
        except Exception as exc:
            return str(exc)
    return None


@pytest.mark.parametrize(("where", "body"), SHELL_BLOCKS, ids=ids(SHELL_BLOCKS))
def test_shell_commands_parse(where, body):
    for words in shell_commands(body):
        args = mcp_latent_args(words)
        if args is not None:
            assert parses(args) is None, f"{where}: `{shlex.join(words)}` does not parse: {parses(args)}"
        script = tool_script(words)
        if script is not None:
            assert script[0].exists(), f"{where}: {script[0]} does not exist"
        if words and words[0].startswith(("tools/", ".venv/bin/python tools/")) and not words[0].endswith(".py"):
            assert (ROOT / words[0]).exists(), f"{where}: {words[0]} does not exist"


def test_the_shell_blocks_name_the_main_commands():
    """The check above is not vacuous: the blocks hold the serve, profile and tool commands it parses."""
    commands = [mcp_latent_args(w) for _, body in SHELL_BLOCKS for w in shell_commands(body)]
    commands = [c for c in commands if c is not None]
    assert {"serve", "profiles", "namespaces", "postgres", "--version"} <= {c[0] for c in commands if c}
    assert parses(["serve", "--transprot", "http"]) is not None  # a misspelt flag is caught


def test_tool_scripts_take_the_flags_shown():
    """Every `tools/*.py` command in the docs names flags that the script's --help lists."""
    wanted: dict[Path, set[str]] = {}
    for _, body in SHELL_BLOCKS:
        for words in shell_commands(body):
            script = tool_script(words)
            if script is not None and script[0].suffix == ".py":
                wanted.setdefault(script[0], set()).update(script[1])
    assert len(wanted) >= 5, sorted(wanted)
    for script, flags in sorted(wanted.items()):
        if not flags:
            continue
        result = subprocess.run(
            [sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{script.name} --help: {result.stderr[-1000:]}"
        missing = [flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", result.stdout)]
        assert not missing, f"{script.relative_to(ROOT)} has no {missing} (its --help: {result.stdout[:2000]})"


def cheap_commands() -> list[list[str]]:
    found = []
    for _, body in SHELL_BLOCKS:
        for words in shell_commands(body):
            args = mcp_latent_args(words)
            if args and (any(args[: len(c)] == c for c in CHEAP) or "--help" in args):
                if args not in found:
                    found.append(args)
    return found


def test_cheap_read_only_commands_run(tmp_path):
    commands = cheap_commands()
    assert any(c[:2] == ["profiles", "list"] for c in commands), commands
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "xdg"))
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-m", "mcp_latent", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"mcp-latent {shlex.join(args)}: {result.stderr[-2000:]}"
        assert result.stdout.strip(), f"mcp-latent {shlex.join(args)} printed nothing"


# --- json and toml blocks --------------------------------------------------------------------------------------------

JSON_BLOCKS = fenced_blocks("json")


def server_entries(data) -> list[dict]:
    """Every object with a `command` key (an MCP client's server entry), at any depth."""
    if isinstance(data, dict):
        own = [data] if "command" in data else []
        return own + [entry for value in data.values() for entry in server_entries(value)]
    if isinstance(data, list):
        return [entry for value in data for entry in server_entries(value)]
    return []


@pytest.mark.parametrize(("where", "body"), JSON_BLOCKS, ids=ids(JSON_BLOCKS))
def test_json_blocks_parse_and_name_a_real_serve_command(where, body):
    data = json.loads(body)
    for entry in server_entries(data):
        assert Path(entry["command"]).name == "mcp-latent", f"{where}: {entry['command']}"
        args = entry.get("args", [])
        assert args[:1] == ["serve"] and parses(args) is None, f"{where}: `mcp-latent {shlex.join(args)}`"
        for key in entry.get("env", {}):
            assert key.startswith("MCP_LATENT_"), f"{where}: {key}"
            assert key.removeprefix("MCP_LATENT_").lower() in settings_fields(), f"{where}: no setting {key}"


def settings_fields() -> set[str]:
    from mcp_latent.settings import Settings

    return set(Settings.model_fields)


def test_client_configs_are_shown():
    configs = [where for where, body in JSON_BLOCKS if server_entries(json.loads(body))]
    assert len(configs) >= 2, configs  # Claude Desktop and OpenClaw at least


TOML_BLOCKS = fenced_blocks("toml")


@pytest.mark.parametrize(("where", "body"), TOML_BLOCKS, ids=ids(TOML_BLOCKS))
def test_toml_blocks_parse_and_profiles_validate(where, body):
    from mcp_latent.profiles.spec import ProfileSpec

    data = tomllib.loads(body)
    if "labels" in data:
        ProfileSpec.model_validate(data)


YAML_BLOCKS = fenced_blocks("yaml")


@pytest.mark.parametrize(("where", "body"), YAML_BLOCKS, ids=ids(YAML_BLOCKS))
def test_yaml_blocks_parse_and_scrape_configs_name_metrics_targets(where, body):
    import yaml

    data = yaml.safe_load(body)
    for job in data.get("scrape_configs", []):  # a Prometheus scrape config: the path it scrapes is ours
        assert job.get("metrics_path", "/metrics") == "/metrics", where
        assert all(":" in target for group in job["static_configs"] for target in group["targets"]), where


def test_a_profile_example_is_shown():
    assert any("labels" in tomllib.loads(body) for _, body in TOML_BLOCKS)


# --- python blocks: each is a snippet file, and the snippet files run ------------------------------------------------

PYTHON_BLOCKS = fenced_blocks("python")


@pytest.mark.parametrize(("where", "body"), PYTHON_BLOCKS, ids=ids(PYTHON_BLOCKS))
def test_python_blocks_are_snippet_files(where, body):
    snippets = {path.name: path.read_text(encoding="utf-8").strip() for path in SNIPPETS.glob("*.py")}
    assert body.strip() in snippets.values(), f"{where}: not the content of any docs/snippets/*.py (copy it there)"


def test_every_snippet_file_is_shown():
    shown = {body.strip() for _, body in PYTHON_BLOCKS}
    unused = [p.name for p in SNIPPETS.glob("*.py") if p.read_text(encoding="utf-8").strip() not in shown]
    assert not unused, f"docs/snippets files no page shows: {unused}"


def snippet_home(tmp_path: Path) -> dict[str, str]:
    """An isolated HOME for a snippet, as a user's would be after the first start: the model's ONNX export and the
    shipped profiles' fits are there (symlinked to the session's warm caches), nothing else."""
    home = tmp_path / "home"
    (home / ".cache" / "mcp-latent").mkdir(parents=True)
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (home / ".cache" / "mcp-latent" / "models").symlink_to(MODEL_CACHE)
    (home / "latent-data" / "cache").mkdir(parents=True)
    (home / "latent-data" / "cache" / "profiles").symlink_to(SHARED_PROFILE_CACHE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_LATENT_", "XDG_"))}
    env["HOME"] = str(home)
    return env


def run_snippet(name: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SNIPPETS / name)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    return result.stdout.splitlines()


def json_lines(name: str, env: dict[str, str]) -> list[dict]:
    """A snippet's output lines, each a tool result's JSON text (a tool error's sentence fails here, shown)."""
    lines = run_snippet(name, env)
    try:
        return [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        raise AssertionError(f"{name} printed something other than a result: {lines}") from None


@pytest.mark.e2e
@pytest.mark.usefixtures("warm_profile_cache")
def test_stdio_client_snippet_runs_against_a_real_server(tmp_path):
    made, judged, taught = json_lines("stdio_client.py", snippet_home(tmp_path))
    assert made["handle"].startswith("h_") and made["verdicts"]["risk"]["label"] == "high"
    assert set(judged["verdicts"]) == {"risk", "roi"}
    assert taught["taught"]["roi"]["label"] == "low" and taught["taught"]["roi"]["exemplars"] > 0


@pytest.mark.e2e
@pytest.mark.usefixtures("warm_profile_cache")
def test_library_snippet_runs(tmp_path):
    env = snippet_home(tmp_path)
    lines = run_snippet("library.py", env)
    assert "'handle': 'h_" in lines[0] and "'risk'" in lines[0] and "'label': 'low'" in lines[1], lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.usefixtures("warm_profile_cache")
def test_http_client_snippet_runs_against_a_server_with_a_token(tmp_path):
    env = snippet_home(tmp_path)
    token_file = Path(env["HOME"]) / ".mcp-latent-token"
    token_file.write_text("0123456789abcdef\n", encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "mcp_latent", "serve", "--transport", "http", "--port", str(port)]
    command += ["--token-file", str(token_file), "--data-dir", str(Path(env["HOME"]) / "latent-data")]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "listening on" not in (line := server.stderr.readline()):
            assert line and time.monotonic() < deadline, "the HTTP server did not start"
        threading.Thread(target=server.stderr.read, daemon=True).start()  # keep the pipe drained
        env["LATENT_URL"] = f"http://127.0.0.1:{port}/mcp"
        (verdict,) = json_lines("http_client.py", env)
        assert verdict["verdicts"]["risk"]["label"] == "low"
        token_file.write_text("a-wrong-token\n", encoding="utf-8")  # the token is what lets it in
        refused = subprocess.run(
            [sys.executable, str(SNIPPETS / "http_client.py")], cwd=ROOT, env=env, capture_output=True, text=True
        )
        # the SDK's error carries the server's reason (issue 21: it used to say only "error response")
        assert refused.returncode != 0 and "wrong bearer token" in refused.stderr, refused.stderr[-2000:]
        assert server.poll() is None  # refused by the token check, not by a server that went away
    finally:
        server.terminate()
        server.wait(60)


# --- docs/tools.md names every tool and exactly its arguments ----------------------------------------------------


def documented_tools() -> dict[str, set[str]]:
    """Each `## \\`tool\\`` section of docs/tools.md: the backticked names in its argument table's first column."""
    sections = re.split(r"^## ", (DOCS / "tools.md").read_text(encoding="utf-8"), flags=re.M)[1:]
    tools = {}
    for section in sections:
        heading = re.match(r"`(\w+)`", section)
        if heading:
            tools[heading.group(1)] = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    return tools


def test_tools_doc_matches_the_published_tools(service):
    import anyio
    from mcp import Client

    from mcp_latent.server.tools import build_server

    async def published() -> dict[str, set[str]]:
        async with Client(build_server(service=service), mode="legacy") as client:
            return {t.name: set(t.input_schema.get("properties", {})) for t in (await client.list_tools()).tools}

    assert documented_tools() == anyio.run(published)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"| `{name}`" in readme for name in documented_tools()), "README's tools table misses a tool"


# --- names in the prose: settings, files and modules exist --------------------------------------------------------


def prose(without_output: bool = False) -> str:
    """Every page's text; `without_output` drops ```text blocks (example output shows a run's own paths)."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    return re.sub(r"^```text\n.*?^```$", "", text, flags=re.M | re.S) if without_output else text


def test_every_setting_named_exists():
    named = set(re.findall(r"MCP_LATENT_([A-Z0-9_]+)", prose())) - {"<NAME>", ""}
    unknown = sorted(name for name in named if name.lower() not in settings_fields())
    assert not unknown, f"no such settings: {['MCP_LATENT_' + n for n in unknown]}"


def test_every_file_and_module_named_exists():
    text = prose(without_output=True)
    paths = set(re.findall(r"\b((?:mcp_latent|tools|tests|profiles|docs)/[\w./-]*\w)", text))
    modules = set(re.findall(r"\b((?:embedding|store|judge|profiles|service|server|cli|eval)/\w+\.py)\b", text))
    missing = [p for p in sorted(paths - {"tools/list", "tools/call"}) if not (ROOT / p).exists()]  # MCP methods
    missing += [m for m in sorted(modules) if not (ROOT / "mcp_latent" / m).exists() and not (ROOT / m).exists()]
    assert not missing, f"named in the docs but not in the tree: {missing}"
