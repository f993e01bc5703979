"""The `mcp-latent` parser and entry point: every command, its flags and their help."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mcp_latent import __version__
from mcp_latent.cli.common import add_common_options, add_data_options, end_process_now, quiet_libraries, setting_option
from mcp_latent.cli.doctor import cmd_doctor
from mcp_latent.cli.profiles import (
    DEFAULT_TARGET_ACCURACY,
    cmd_profiles_build,
    cmd_profiles_check,
    cmd_profiles_eval,
    cmd_profiles_fit,
    cmd_profiles_list,
    cmd_profiles_stats,
    cmd_profiles_teach,
    cmd_profiles_tune,
)
from mcp_latent.cli.report import cmd_report, cmd_setup
from mcp_latent.cli.serve import cmd_evaluate, cmd_serve
from mcp_latent.cli.store import (
    cmd_namespaces_drop,
    cmd_namespaces_export,
    cmd_namespaces_list,
    cmd_postgres_start,
    cmd_postgres_stop,
)
from mcp_latent.cli.untaught import add_untaught_parser
from mcp_latent.errors import LatentError
from mcp_latent.profiles.spec import DEFAULT_TARGET_OUT_OF_SCOPE_RECALL

# The top-level `--help` text: written for a user, not cut from a docstring (a cut once ended it mid-sentence).
DESCRIPTION = (
    "mcp-latent is an MCP server that hands evaluation to vector math. `handoff` embeds a text once behind a "
    "handle; `evaluate` scores it against evaluator profiles (risk, roi, category, or your own) and answers with a "
    "calibrated verdict or 'unsure, escalate'; `teach` gives a profile the label the calling model chose, so the "
    "next such text is decided without it. Start the server with `mcp-latent serve`; see `mcp-latent COMMAND "
    "--help` for each command."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-latent",
        description=DESCRIPTION,
        epilog="Every setting is also an environment variable MCP_LATENT_<NAME>; listed in docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-latent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    add_common_options(serve)
    setting_option(serve, "--transport", "transport", choices=["stdio", "http"])
    setting_option(serve, "--host", "host")
    setting_option(serve, "--port", "port", type=int)
    setting_option(serve, "--token-file", "token_file", metavar="FILE")
    setting_option(serve, "--token", "token")
    setting_option(serve, "--tokens-file", "tokens_file", metavar="FILE")
    serve.set_defaults(func=cmd_serve)

    evaluate = commands.add_parser("evaluate", help="print verdicts for a text")
    add_common_options(evaluate)
    evaluate.add_argument("text", help="the text to judge")
    evaluate.add_argument("--profile", action="append", help="profile to apply (repeatable; default all)")
    evaluate.add_argument("--detail", action="store_true", help="show evidence")
    evaluate.add_argument("--json", action="store_true", help="print the JSON result")
    evaluate.set_defaults(func=cmd_evaluate)

    profiles = commands.add_parser("profiles", help="list, check, build, tune, evaluate and teach profiles")
    sub = profiles.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="list available profiles (reads the files only)")
    add_common_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_profiles_list)

    fit = sub.add_parser("fit", help="embed and fit profiles now into the shared profile cache (setup runs it)")
    add_common_options(fit)
    fit.add_argument("names", nargs="*", help="profiles to fit (default: every profile that loads)")
    fit.set_defaults(func=cmd_profiles_fit)

    check = sub.add_parser("check", help="validate every profile file")
    add_common_options(check)
    check.set_defaults(func=cmd_profiles_check)

    build = sub.add_parser("build", help="build a profile from labeled JSONL/CSV")
    add_common_options(build)
    add_data_options(build)
    build.add_argument("--name", required=True, help="profile name: letters, digits, '.', '_', '-' (the file name)")
    build.add_argument("--out", help="directory for the profile file (default: the user profiles dir)")
    build.add_argument("--split", help="use only rows whose split field has this value (e.g. train)")
    build.add_argument("--description", help="one line saying what the profile judges")
    build.add_argument(
        "--target-accuracy",
        type=float,
        help=f"answered-accuracy target (default {DEFAULT_TARGET_ACCURACY}, or the knee of the curve when that "
        "is out of reach at 50%% coverage)",
    )
    build.add_argument(
        "--target-oos-recall",
        type=float,
        default=DEFAULT_TARGET_OUT_OF_SCOPE_RECALL,
        help=f"share of out-of-scope texts to flag (simulated; default {DEFAULT_TARGET_OUT_OF_SCOPE_RECALL})",
    )
    build.add_argument("--exclude-label", action="append", help="leave a label out (repeatable)")
    build.add_argument(
        "--off-topic",
        action="store_true",
        help="add the shared off-topic texts (small talk, questions) as an abstain label: the profile answers "
        "'unsure, out of scope' on them instead of forcing a label",
    )
    build.add_argument("--no-fit", action="store_true", help="write the file only; fit on first use")
    build.set_defaults(func=cmd_profiles_build)

    ev = sub.add_parser("eval", help="measure a profile on labeled data (accuracy, coverage, calibration, plots)")
    add_common_options(ev)
    add_data_options(ev)
    ev.add_argument("--profile", required=True, help="the profile to measure")
    ev.add_argument("--split", default="test", help="rows of this split are the test set (default: test)")
    ev.add_argument("--out", default="eval-out", help="directory for summary.json, summary.md and PNG plots")
    ev.add_argument("--no-baselines", action="store_true", help="skip the baseline classifiers")
    ev.set_defaults(func=cmd_profiles_eval)

    stats = sub.add_parser("stats", help="answered / escalated / taught counts and agreement per profile")
    add_common_options(stats)
    stats.add_argument("--json", action="store_true", help="print the JSON summary")
    stats.add_argument("--plot", help="also write a PNG of the escalation rate over time to this path")
    stats.set_defaults(func=cmd_profiles_stats)

    add_untaught_parser(sub)

    tune = sub.add_parser("tune", help="move a built profile's operating point (no refit; prints the curve)")
    add_common_options(tune)
    tune.add_argument("--profile", required=True, help="the profile to tune (a user profile)")
    tune.add_argument("--target-accuracy", type=float, help="answered-accuracy target")
    tune.add_argument("--target-oos-recall", type=float, help="share of out-of-scope texts to flag (simulated)")
    tune.set_defaults(func=cmd_profiles_tune)

    teach = sub.add_parser("teach", help="add one labeled exemplar to a profile")
    add_common_options(teach)
    teach.add_argument("--profile", required=True, help="the profile to teach")
    teach.add_argument("--label", required=True, help="the correct label for the text")
    teach.add_argument("text", help="the exemplar text")
    teach.set_defaults(func=cmd_profiles_teach)

    ns = commands.add_parser("namespaces", help="list, export (JSONL on stdout) or drop namespaces")
    ns_sub = ns.add_subparsers(dest="namespaces_command", required=True, metavar="ACTION")
    ns_list = ns_sub.add_parser("list", help="namespaces with their handoff counts")
    add_common_options(ns_list)
    ns_list.set_defaults(func=cmd_namespaces_list)
    ns_export = ns_sub.add_parser("export", help="every handoff of a namespace as JSONL (vectors included)")
    add_common_options(ns_export)
    ns_export.add_argument("namespace", help="the namespace to export")
    ns_export.set_defaults(func=cmd_namespaces_export)
    ns_drop = ns_sub.add_parser("drop", help="delete a namespace and all its handoffs (needs --yes)")
    add_common_options(ns_drop)
    ns_drop.add_argument("namespace", help="the namespace to delete (no default: name it)")
    ns_drop.add_argument("--yes", action="store_true", help="confirm the deletion (irreversible)")
    ns_drop.set_defaults(func=cmd_namespaces_drop)

    doctor = commands.add_parser("doctor", help="check the install and the configuration; print each fix")
    add_common_options(doctor)
    setting_option(doctor, "--transport", "transport", choices=["stdio", "http"])
    setting_option(doctor, "--host", "host")
    setting_option(doctor, "--token-file", "token_file", metavar="FILE")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument("--quick", action="store_true", help="skip comparing the ONNX vectors with torch's")
    doctor.add_argument("--min-free-mb", type=int, default=500, help="free space the data dir needs (default 500)")
    doctor.set_defaults(func=cmd_doctor)

    report = commands.add_parser("report", help="write the usage page (what vector math saved) as one HTML file")
    add_common_options(report)
    report.add_argument("--out", default="mcp-latent-report.html", help="the HTML file to write")
    report.set_defaults(func=cmd_report)

    setup = commands.add_parser("setup", help="prepare a fresh install: export the model to ONNX, fit every profile")
    add_common_options(setup)
    setup.set_defaults(func=cmd_setup)

    pg = commands.add_parser(
        "postgres", help="a local PostgreSQL + pgvector for trying the shared store (the [pgserver] extra)"
    )
    pg_sub = pg.add_subparsers(dest="postgres_command", required=True, metavar="ACTION")
    pg_start = pg_sub.add_parser("start", help="create (first time) and start it; prints MCP_LATENT_STORE_URL=...")
    pg_start.add_argument("--dir", required=True, type=Path, help="directory of the cluster (created if absent)")
    pg_start.add_argument(
        "--port", dest="pg_port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one, kept)"
    )
    pg_start.set_defaults(func=cmd_postgres_start)
    pg_stop = pg_sub.add_parser("stop", help="stop it (the data stays in --dir)")
    pg_stop.add_argument("--dir", required=True, type=Path, help="directory of the cluster")
    pg_stop.set_defaults(func=cmd_postgres_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Called without `argv` it is the process's entry point (the console script, `python -m`): a
    finished `serve` then ends the process itself (end_process_now); with `argv` (tests) it only returns."""
    quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
    except LatentError as exc:
        print(f"mcp-latent: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader of stdout left (`namespaces export NAME | head`): it chose to stop reading, which is no error of
        # ours. Point stdout at /dev/null so the interpreter's final flush does not raise (and print) it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if argv is None and args.command == "serve":
        end_process_now(code)
    return code
