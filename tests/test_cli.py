"""The command line: read-only commands never load the model, destructive ones need a name and --yes, errors are
one line with a non-zero exit, and every option's help names its environment variable."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest
from conftest import HashingEmbedder

from mcp_latent import __version__
from mcp_latent.cli import main as cli
from mcp_latent.settings import Settings

HEAVY_MODULES = ("torch", "sentence_transformers", "transformers")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["profiles", "list"],
        ["profiles", "list", "--json"],
        ["profiles", "check"],
        ["namespaces", "list"],
    ],
)
def test_commands_that_read_files_never_import_the_model(tmp_path, argv):
    """`profiles list` used to load torch and the model (24-57 s under load) to print what the files say."""
    command = [sys.executable, "-X", "importtime", "-m", "mcp_latent", *argv]
    if argv[0] in ("profiles", "namespaces"):
        command += ["--data-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)  # not the checkout
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {name for name in imported if name.split(".")[0] in HEAVY_MODULES}
    if argv[0] == "profiles" and argv[1] == "list":
        assert "risk" in done.stdout


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"mcp-latent {__version__}"


def every_option(parser: argparse.ArgumentParser, path: str = "mcp-latent"):
    """(command path, option, whether it mirrors a setting) for every option of every command."""
    mirrored = parser.get_default("setting_flags") or ()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_option(sub, f"{path} {name}")
        elif action.option_strings and action.dest not in ("help", "version"):
            yield path, action, action.dest in mirrored


def test_every_option_has_help_and_settings_name_their_environment_variable():
    options = list(every_option(cli.build_parser()))
    served = {action.option_strings[0] for path, action, setting in options if path.endswith(" serve") and setting}
    assert {"--transport", "--host", "--port", "--token-file", "--data-dir"} <= served
    for path, action, setting in options:
        assert action.help, f"{path} {action.option_strings[0]} has no help"
        if setting:
            assert f"MCP_LATENT_{action.dest.upper()}" in action.help, f"{path} {action.option_strings[0]}"


def test_top_level_help_is_whole_sentences_and_data_dir_shows_its_default(tmp_path):
    # The top-level description was the CLI module's docstring cut at its first line: "... No logic of".
    # And `--data-dir` (a factory default) showed no default at all.
    def help_of(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mcp_latent", *argv, "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return re.sub(r"-\s+", "-", " ".join(done.stdout.split()))  # undo argparse's wrapping, at hyphens too

    top = help_of()
    description = top.split("COMMAND ...", 1)[1].split("positional arguments:", 1)[0].strip()
    assert description == " ".join(cli.DESCRIPTION.split()) and description.endswith(".")
    assert cli.__doc__ is None or cli.__doc__.split("\n")[0] not in top
    for sentence in re.split(r"(?<=[.;])\s+", description):
        assert sentence.endswith((".", ";")) and len(sentence.split()) >= 4, sentence
    assert "MCP server" in description and "mcp-latent serve" in description
    for command in (("serve",), ("profiles", "list"), ("namespaces", "list")):
        assert "--data-dir DIR" in help_of(*command)
        assert "default ~/.local/share/mcp-latent; env MCP_LATENT_DATA_DIR" in help_of(*command), command


def test_every_setting_option_shows_the_settings_default():
    from mcp_latent.settings import default_text

    for path, action, setting in every_option(cli.build_parser()):
        default = default_text(action.dest) if setting else None
        if default is not None:
            assert f"default {default}; env" in action.help.replace("%%", "%"), f"{path} {action.option_strings[0]}"


def test_namespaces_drop_needs_an_explicit_name_and_yes(tmp_path, capsys):
    from mcp_latent.service.api import LatentService

    data = tmp_path / "d"
    service = LatentService(Settings(data_dir=data, builtin_profiles=False), embedder=HashingEmbedder())
    service.start()
    service.handoff("keep me")
    service.handoff("and me", namespace="team")
    service.close()

    code, _, err = run(capsys, "namespaces", "drop", "--data-dir", str(data))  # used to drop `default`
    assert code == 2 and "namespace" in err
    code, _, err = run(capsys, "namespaces", "drop", "default", "--data-dir", str(data))
    assert code == 2 and "--yes" in err and "export default" in err
    code, _, err = run(capsys, "namespaces", "drop", "defualt", "--yes", "--data-dir", str(data))
    assert code == 2 and "namespaces: default, team" in err
    code, out, _ = run(capsys, "namespaces", "list", "--data-dir", str(data))
    assert "default" in out and "team" in out

    code, out, _ = run(capsys, "namespaces", "drop", "team", "--yes", "--data-dir", str(data))
    assert code == 0 and json.loads(out) == {"namespace": "team", "dropped": 1}


def test_exporting_an_unknown_namespace_is_an_error(tmp_path, capsys):
    from mcp_latent.service.api import LatentService

    data = tmp_path / "d"
    service = LatentService(Settings(data_dir=data, builtin_profiles=False), embedder=HashingEmbedder())
    service.start()
    made = service.handoff("exported text")["handle"]
    service.close()

    code, out, err = run(capsys, "namespaces", "export", "nosuch", "--data-dir", str(data))
    assert code != 0 and out == "" and "'nosuch' has no handoffs; namespaces: default" in err
    code, out, _ = run(capsys, "namespaces", "export", "default", "--data-dir", str(data))
    assert code == 0 and json.loads(out.splitlines()[0])["handle"] == made


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--name", "bad name/../x"], "profile name 'bad name/../x' is not allowed"),
        (["--name", "fine", "--target-accuracy", "7"], "cannot build profile 'fine': target_accuracy"),
    ],
)
def test_profile_build_errors_are_one_line(tmp_path, capsys, extra, expected):
    source = tmp_path / "rows.jsonl"
    rows = [{"text": f"example {i}", "label": "ab"[i % 2]} for i in range(10)]
    source.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    code, _, err = run(capsys, "profiles", "build", "--from", str(source), "--out", str(tmp_path / "p"), *extra)
    assert code == 2 and expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())


def test_a_bad_setting_names_its_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MCP_LATENT_MAX_K", "lots")
    code, _, err = run(capsys, "profiles", "list", "--data-dir", str(tmp_path))
    assert code == 2 and "MCP_LATENT_MAX_K" in err and "Traceback" not in err


def test_serve_leaves_loading_to_the_server(monkeypatch, tmp_path):
    """Nothing loads while the MCP SDK imports: loading beside it only shared the GIL with it and delayed
    `tools/list` (1.11 s quiet) without bringing the first verdict sooner. The server starts the loading once it
    answers (its lifespan); HTTP after its token and port checks."""
    import mcp_latent.server.startup as server

    handed: list = []
    monkeypatch.setattr(server, "serve", lambda settings, transport=None, service=None: handed.append(service))
    for transport in ("stdio", "http"):
        assert cli.main(["serve", "--transport", transport, "--data-dir", str(tmp_path)]) == 0
    assert handed == [None, None]
