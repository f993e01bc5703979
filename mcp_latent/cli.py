"""The `mcp-latent` command line: serve, evaluate, profiles list/check/build/eval/teach. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .errors import LatentError


def _quiet_libraries() -> None:
    # stdout belongs to the MCP protocol; keep library chatter and progress bars off it (and mostly off stderr).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _settings(args: argparse.Namespace) -> Any:
    from .settings import Settings

    overrides = {
        key: getattr(args, key)
        for key in ("data_dir", "profiles_dir", "model", "transport", "host", "port", "token", "log_level")
        if getattr(args, key, None) is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


def _service(args: argparse.Namespace) -> Any:
    from .service import LatentService

    service = LatentService(_settings(args))
    service.start()
    service.wait_ready()
    return service


def _print_json(data: Any) -> None:
    print(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(_settings(args))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        result = service.evaluate(text=args.text, profiles=args.profile or None, detail=args.detail)
    finally:
        service.close()
    if args.json:
        _print_json(result)
        return 0
    for name, verdict in result["verdicts"].items():
        label = verdict["label"] if verdict["label"] is not None else "UNSURE (escalate)"
        extra = f"  score={verdict['score']}" if "score" in verdict else ""
        print(f"{name:>12}: {label}  p={verdict['p']}{extra}")
        for text, lab, sim in verdict.get("neighbours", []):
            print(f"{'':>14}~ {sim:.2f} [{lab}] {text}")
    return 0


def cmd_profiles_list(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        profiles = service.list_profiles()
    finally:
        service.close()
    if args.json:
        _print_json(profiles)
        return 0
    for p in profiles:
        origin = "shipped" if p["builtin"] else "user"
        print(
            f"{p['name']:<16} {origin:<7} {p['exemplars']:>6} exemplars  labels: {', '.join(p['labels'][:8])}"
            + (" ..." if len(p["labels"]) > 8 else "")
        )
    return 0


def cmd_profiles_check(args: argparse.Namespace) -> int:
    from .profiles import ProfileRegistry

    settings = _settings(args)
    results = ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles).check_all()
    bad = 0
    for path, error in results:
        print(f"ok    {path}" if error is None else f"ERROR {error}")
        bad += error is not None
    if not results:
        print("no profile files found")
    return 1 if bad else 0


def cmd_profiles_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .profile_builder import build_profile
    from .profile_fitter import flatten
    from .profiles import Profile

    settings = _settings(args)
    out_dir = Path(args.out) if args.out else settings.user_profiles_dir
    spec, path, report = build_profile(
        Path(args.source),
        args.name,
        out_dir,
        description=args.description or "",
        text_field=args.text_field,
        label_field=args.label_field,
        split_field=args.split_field,
        split=args.split,
        target_accuracy=args.target_accuracy,
        target_out_of_scope_recall=args.target_oos_recall,
        exclude_labels=set(args.exclude_label or []),
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    if args.no_fit:
        return 0
    # Embed and fit now (cached under the data dir), so `serve` starts without re-embedding.
    from .embedder import load_embedder
    from .profile_fitter import ProfileFitter

    embedder = load_embedder(
        settings.model, settings.device, settings.effective_torch_threads, settings.embed_batch_size
    )
    profile = Profile(spec=spec, path=path, builtin=False)
    with tqdm(total=len(flatten(profile)[0]), desc=f"embedding {args.name}", unit="ex", file=sys.stderr) as bar:
        fitted = ProfileFitter(settings.data_dir / "cache" / "profiles", embedder).fitted(profile, bar.update)
    cal = fitted.calibration
    print(
        f"fitted: cross-validated accuracy {cal.cv_accuracy:.4f}, threshold {cal.threshold:.3f} "
        f"(target answered accuracy {spec.target_accuracy}), out-of-scope below similarity {cal.min_similarity:.3f}"
        + (
            f" (simulated out-of-scope recall {cal.cv_out_of_scope_recall:.3f}, target "
            f"{spec.target_out_of_scope_recall})"
            if cal.cv_out_of_scope_recall is not None
            else ""
        )
        if cal.cv_accuracy is not None
        else "fitted with default calibration (too few exemplars per label)",
        file=sys.stderr,
    )
    return 0


def cmd_profiles_eval(args: argparse.Namespace) -> int:
    from .quality import run_evaluation

    settings = _settings(args)
    summary = run_evaluation(
        settings,
        profile_name=args.profile,
        source=Path(args.source),
        split=args.split,
        text_field=args.text_field,
        label_field=args.label_field,
        split_field=args.split_field,
        out_dir=Path(args.out),
        baselines=not args.no_baselines,
    )
    print(summary["markdown"])
    return 0


def cmd_profiles_teach(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        _print_json(service.teach(args.profile, args.label, text=args.text))
    finally:
        service.close()
    return 0


def cmd_namespaces(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        if args.action == "list":
            for entry in service.namespaces()["namespaces"]:
                print(f"{entry['namespace']:<32} {entry['count']:>8} handoffs")
        elif args.action == "export":
            for record in service.export_namespace(args.namespace):
                _print_json(record)
        else:
            _print_json(service.drop_namespace(args.namespace))
    finally:
        service.close()
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (MCP_LATENT_DATA_DIR)")
    parser.add_argument("--profiles-dir", help="user profiles directory (MCP_LATENT_PROFILES_DIR)")
    parser.add_argument("--model", help="sentence-transformers model name or path (MCP_LATENT_MODEL)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(MCP_LATENT_LOG_LEVEL)")


def _add_data_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, help="labeled data: .jsonl or .csv")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--label-field", default="label")
    parser.add_argument("--split-field", default="split")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-latent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    _add_common(serve)
    serve.add_argument("--transport", choices=["stdio", "http"])
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--token", help="bearer token for HTTP (MCP_LATENT_TOKEN); required off loopback")
    serve.set_defaults(func=cmd_serve)

    evaluate = commands.add_parser("evaluate", help="print verdicts for a text")
    _add_common(evaluate)
    evaluate.add_argument("text")
    evaluate.add_argument("--profile", action="append", help="profile to apply (repeatable; default all)")
    evaluate.add_argument("--detail", action="store_true", help="show evidence")
    evaluate.add_argument("--json", action="store_true", help="print the JSON result")
    evaluate.set_defaults(func=cmd_evaluate)

    profiles = commands.add_parser("profiles", help="list, check, build, evaluate and teach profiles")
    sub = profiles.add_subparsers(dest="profiles_command", required=True)

    listing = sub.add_parser("list", help="list available profiles")
    _add_common(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_profiles_list)

    check = sub.add_parser("check", help="validate every profile file")
    _add_common(check)
    check.set_defaults(func=cmd_profiles_check)

    build = sub.add_parser("build", help="build a profile from labeled JSONL/CSV")
    _add_common(build)
    _add_data_fields(build)
    build.add_argument("--name", required=True)
    build.add_argument("--out", help="directory for the profile file (default: the user profiles dir)")
    build.add_argument("--split", help="use only rows whose split field has this value (e.g. train)")
    build.add_argument("--description")
    build.add_argument("--target-accuracy", type=float, default=0.98, help="answered-accuracy target (abstention)")
    build.add_argument(
        "--target-oos-recall", type=float, default=0.8, help="share of out-of-scope texts to flag (simulated)"
    )
    build.add_argument("--exclude-label", action="append", help="leave a label out (repeatable)")
    build.add_argument("--no-fit", action="store_true", help="write the file only; fit on first use")
    build.set_defaults(func=cmd_profiles_build)

    ev = sub.add_parser("eval", help="measure a profile on labeled data (accuracy, coverage, calibration, plots)")
    _add_common(ev)
    _add_data_fields(ev)
    ev.add_argument("--profile", required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--out", default="eval-out", help="directory for summary.json, summary.md and PNG plots")
    ev.add_argument("--no-baselines", action="store_true")
    ev.set_defaults(func=cmd_profiles_eval)

    ns = commands.add_parser("namespaces", help="list, export (JSONL on stdout) or drop namespaces")
    _add_common(ns)
    ns.add_argument("action", choices=["list", "export", "drop"])
    ns.add_argument("namespace", nargs="?", default="default")
    ns.set_defaults(func=cmd_namespaces)

    teach = sub.add_parser("teach", help="add one labeled exemplar to a profile")
    _add_common(teach)
    teach.add_argument("--profile", required=True)
    teach.add_argument("--label", required=True)
    teach.add_argument("text")
    teach.set_defaults(func=cmd_profiles_teach)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LatentError as exc:
        print(f"mcp-latent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
