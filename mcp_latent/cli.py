"""The `mcp-latent` command line: serve, evaluate, profiles list/check/build/tune/eval/teach, namespaces. No logic of
its own. Commands that only read files (`profiles list`, `profiles check`, `--help`, `--version`) never import the
embedding stack: engine modules are imported inside the commands that need them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InvalidInput, LatentError


def _quiet_libraries() -> None:
    # stdout belongs to the MCP protocol; keep library chatter and progress bars off it (and mostly off stderr).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from .settings import Settings

    overrides = {
        key: getattr(args, key)
        for key in getattr(args, "setting_flags", ())  # the options that mirror a setting (see _setting_option)
        if getattr(args, key, None) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # a bad flag or MCP_LATENT_* variable: name it, no traceback
        problems = "; ".join(
            f"MCP_LATENT_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidInput(f"invalid setting: {problems}.") from exc
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


ONE_SHOT_PROFILE_WAIT = 24 * 3600.0


def _service(args: argparse.Namespace) -> Any:
    from .service import LatentService

    settings = _settings(args)
    settings.profile_wait_seconds = ONE_SHOT_PROFILE_WAIT  # no event loop to keep free: wait for a fit
    service = LatentService(settings)
    service.start(fit_profiles=False)  # one-shot commands fit only the profiles they use, when they use them
    service.wait_ready()
    return service


def _print_json(data: Any) -> None:
    print(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # The model, the store and the profiles load in a background thread that the server starts once it answers
    # (its lifespan), not while the MCP SDK imports: both are Python-heavy, so loading beside the import only shared
    # the GIL with it and made `tools/list` wait for the model too (1.11 s quiet, against ~0.7 s after this change),
    # without bringing the first verdict sooner.
    from .server import serve

    serve(settings)  # returns once the client left (stdio) or the process was stopped (http), the store closed
    return 0


def end_process_now(code: int) -> None:
    """End a finished `serve` without Python's finalisation. Profile fits may still run in background threads inside
    native code (ONNX Runtime, BLAS, hnswlib); finalisation ends such threads by unwinding them through C++ frames,
    which aborts the process (SIGABRT, 'terminate called without an active exception') where a client left while
    profiles fitted. Nothing is lost by skipping it: the store is closed, fits are written atomically and an
    unfinished one is fitted again at the next start, and output is flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the client may have closed the pipe already
            pass
    os._exit(code)


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


def _registry(args: argparse.Namespace) -> Any:
    """The profiles as the server would load them: files plus the exemplars taught into the store (opened
    without the model)."""
    from .profiles import ProfileRegistry

    settings = _settings(args)
    store = _store(args) if settings.store_url or settings.data_dir.exists() else None
    try:
        registry = ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles, store=store)
        registry.load_all()
    finally:
        if store is not None:
            store.close()
    return registry


def _stored_fits(settings: Any) -> Any:
    """Reads stored fits by the configured model's id, without loading the model."""
    from .embedder import resolve_model_source
    from .profile_fitter import NamedModel, ProfileFitter

    return ProfileFitter(settings.data_dir / "cache" / "profiles", NamedModel(resolve_model_source(settings.model)[1]))


def cmd_profiles_list(args: argparse.Namespace) -> int:
    from .operating_curve import summary

    settings = _settings(args)
    fits = _stored_fits(settings)
    profiles = []
    for profile in _registry(args).profiles.values():  # no fit: a stored one tells where each profile answers
        listed = profile.summary()
        calibration = fits.cached_calibration(profile)
        if calibration is not None:
            listed.update(summary(calibration, profile.spec))
        profiles.append(listed)
    if args.json:
        _print_json(profiles)
        return 0
    for p in profiles:
        origin = "shipped" if p["builtin"] else "user"
        print(
            f"{p['name']:<16} {origin:<7} {p['exemplars']:>6} exemplars  labels: {', '.join(p['labels'][:8])}"
            + (" ..." if len(p["labels"]) > 8 else "")
        )
        if "coverage" in p:
            print(
                f"{'':<25}target accuracy {p['target_accuracy']}: answers {100 * p['coverage']:.1f}% at "
                f"{100 * p['answered_accuracy']:.1f}% (cross-validated)"
            )
        if "warning" in p:
            print(f"{'':<25}warning: {p['warning']}")
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


DEFAULT_TARGET_ACCURACY = 0.98  # `profiles build` aims here unless told otherwise, or at the knee when it cannot


def _show_operating_point(fitted: Any, spec: Any, path: Path, changes: dict[str, Any]) -> None:
    """Print the estimated curve, write its PNG beside the profile file, and write the file with `changes` and
    the chosen point recorded."""
    from .operating_curve import plot, record, table, warning
    from .profiles import read_profile_file, write_profile_file

    cal = fitted.calibration
    for line in table(cal, spec):
        print(line, file=sys.stderr)
    png = plot(cal, spec, path.with_suffix(".curve.png"))
    if png is not None:
        print(f"wrote {png}", file=sys.stderr)
    problem = warning(cal, spec)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    if cal.evidence is not None:
        changes = {**changes, "operating_point": record(cal)}
    written = read_profile_file(path)  # the file as written: without exemplars taught at run time
    write_profile_file(written.model_copy(update=changes), path)


def cmd_profiles_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .operating_curve import knee_target
    from .profile_builder import build_profile
    from .profile_fitter import flatten
    from .profiles import Profile

    settings = _settings(args)
    out_dir = Path(args.out) if args.out else settings.user_profiles_dir
    asked = args.target_accuracy
    spec, path, report = build_profile(
        Path(args.source),
        args.name,
        out_dir,
        description=args.description or "",
        text_field=args.text_field,
        label_field=args.label_field,
        split_field=args.split_field,
        split=args.split,
        target_accuracy=DEFAULT_TARGET_ACCURACY if asked is None else asked,
        target_out_of_scope_recall=args.target_oos_recall,
        exclude_labels=set(args.exclude_label or []),
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    if args.no_fit:
        return 0
    # Embed and fit now (cached under the data dir), so `serve` starts without re-embedding.
    from .embedder import load_configured_embedder
    from .profile_fitter import ProfileFitter

    embedder = load_configured_embedder(settings)
    profile = Profile(spec=spec, path=path, builtin=False)
    fitter = ProfileFitter(settings.profile_cache_dir, embedder)
    with tqdm(total=len(flatten(profile)[0]), desc=f"embedding {args.name}", unit="ex", file=sys.stderr) as bar:
        fitted = fitter.fitted(profile, bar.update)
    if args.out:  # beside the file too, so a server reading profiles from there finds it whatever its data dir
        fitter.save(spec.name, fitter.fit_key(spec), fitted, folder=fitter.beside(path))
    cal = fitted.calibration
    if cal.cv_accuracy is None:
        print("fitted with default calibration (too few exemplars per label)", file=sys.stderr)
        return 0
    print(
        f"fitted: cross-validated closed-set accuracy {cal.cv_accuracy:.4f} (head C {cal.c:g}, kNN weight "
        f"{cal.knn_weight:g}, words weight {cal.words_weight:g})",
        file=sys.stderr,
    )
    knee = knee_target(cal)
    if asked is None and not cal.reachable and knee is not None:
        # The default target would escalate most texts: a default should fit the profile, so take the knee.
        print(
            f"the default target accuracy {spec.target_accuracy} is out of reach at useful coverage "
            f"(cross-validated coverage {100 * (cal.cv_coverage or 0):.1f}%); using the knee of the curve, {knee:.3f} "
            f"(pass --target-accuracy {spec.target_accuracy} to insist)",
            file=sys.stderr,
        )
        spec = spec.model_copy(update={"target_accuracy": knee})
        fitted.calibration = cal.retarget(spec)
    _show_operating_point(fitted, spec, path, {"target_accuracy": spec.target_accuracy})
    return 0


def cmd_profiles_tune(args: argparse.Namespace) -> int:
    from .embedder import load_configured_embedder
    from .errors import InvalidInput
    from .profile_fitter import ProfileFitter

    settings = _settings(args)
    profile = _registry(args).get(args.profile)
    if profile.builtin:
        raise InvalidInput(
            f"profile {args.profile!r} is shipped with mcp-latent; copy {profile.path} into "
            f"{settings.user_profiles_dir} to tune it."
        )
    for flag, value, low in (
        ("--target-accuracy", args.target_accuracy, 0.0),
        ("--target-oos-recall", args.target_oos_recall, -1e-9),
    ):
        if value is not None and not low < value <= 1.0:
            raise InvalidInput(f"{flag} must be a share between 0 and 1 (e.g. 0.95), got {value}.")
    changes: dict[str, Any] = {"threshold": None, "min_similarity": None}  # a target replaces fixed settings
    if args.target_accuracy is not None:
        changes["target_accuracy"] = args.target_accuracy
    if args.target_oos_recall is not None:
        changes["target_out_of_scope_recall"] = args.target_oos_recall
    spec = (profile.base or profile.spec).model_copy(update=changes)  # the file's exemplars: the built fit's
    profile.spec = profile.base = spec
    fitted = _stored_fits(settings).cached(profile)
    how = "no refit: the point is chosen from the stored cross-validation"
    if fitted is None:
        how = "fitted once; later tunes reuse it"
        print(f"no cached fit of {args.profile}; fitting it (once)", file=sys.stderr)
        embedder = load_configured_embedder(settings)
        fitted = ProfileFitter(settings.data_dir / "cache" / "profiles", embedder).fitted(profile)
    if fitted.calibration.evidence is None:
        raise InvalidInput(f"profile {args.profile!r} has too few exemplars per label to estimate a curve.")
    _show_operating_point(fitted, spec, profile.path, changes)
    print(f"updated {profile.path} ({how})", file=sys.stderr)
    return 0


def cmd_profiles_eval(args: argparse.Namespace) -> int:
    from .eval.quality import run_evaluation

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


def cmd_profiles_stats(args: argparse.Namespace) -> int:
    from .profile_stats import ProfileStats, plot_escalation

    settings = _settings(args)  # reads the data dir's stats file only: no model, no fit
    stats = ProfileStats(settings.data_dir / "stats.sqlite")
    summary = stats.summary()
    if args.plot:
        print(f"wrote {plot_escalation(stats, sorted(summary), Path(args.plot))}", file=sys.stderr)
    if args.json:
        _print_json(summary)
        return 0
    if not summary:
        print("no verdicts recorded yet in this data dir")
    for name, s in summary.items():
        rate = "n/a" if s["escalation_rate"] is None else f"{s['escalation_rate']:.1%}"
        agreement = "n/a" if s["agreement"] is None else f"{s['agreement']:.1%} of {s['agreed'] + s['disagreed']}"
        print(
            f"{name:<16} answered {s['answered']:>7}  escalated {s['escalated']:>7} ({rate})  "
            f"taught {s['taught']:>6}  agreement {agreement}"
        )
    return 0


def _store(args: argparse.Namespace) -> Any:
    """The data dir's store without the model (it adopts the model its records were made with): namespaces
    commands only read or delete records."""
    from .store import open_store

    return open_store(_settings(args))


def cmd_namespaces_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        for entry in store.namespaces():
            print(f"{entry['namespace']:<32} {entry['count']:>8} handoffs")
    finally:
        store.close()
    return 0


def cmd_namespaces_export(args: argparse.Namespace) -> int:
    from .service import export_namespace

    store = _store(args)
    try:
        for record in export_namespace(store, args.namespace):  # NotFound (exit 2) for an unknown namespace
            _print_json(record)
    finally:
        store.close()
    return 0


def cmd_namespaces_drop(args: argparse.Namespace) -> int:
    from .service import existing_namespace

    if not args.yes:  # checked before anything is opened
        raise InvalidInput(
            f"`namespaces drop {args.namespace}` deletes every handoff of that namespace for good; add --yes to "
            f"confirm (keep a copy first: mcp-latent namespaces export {args.namespace} > {args.namespace}.jsonl)."
        )
    store = _store(args)
    try:
        namespace = existing_namespace(store, args.namespace)  # a mistyped name is an error, not "dropped 0"
        _print_json({"namespace": namespace, "dropped": store.drop(namespace)})
    finally:
        store.close()
    return 0


def cmd_postgres_start(args: argparse.Namespace) -> int:
    from .local_postgres import LocalPostgres

    server = LocalPostgres(args.dir, args.pg_port or None)
    if server.running:
        print(f"already running (pid {server.pid})", file=sys.stderr)
    else:
        server.start()
    print(f"MCP_LATENT_STORE_URL={server.url}")
    return 0


def cmd_postgres_stop(args: argparse.Namespace) -> int:
    from .local_postgres import LocalPostgres

    LocalPostgres(args.dir).stop()
    return 0


# --- options: the ones that mirror a setting take their help from it and name its environment variable ------------


def _setting_option(parser: argparse.ArgumentParser, flag: str, field: str, **kwargs: Any) -> None:
    """An option that overrides setting `field`; its help is the setting's description plus its variable."""
    from .settings import Settings

    info = Settings.model_fields[field]
    default = "" if info.default in (None, "") or info.default_factory else f"default {info.default}; "
    help_text = f"{info.description} ({default}env MCP_LATENT_{field.upper()})"
    parser.add_argument(flag, dest=field, help=help_text.replace("%", "%%"), **kwargs)
    flags = parser.get_default("setting_flags") or ()
    parser.set_defaults(setting_flags=(*flags, field))


def _add_common(parser: argparse.ArgumentParser) -> None:
    _setting_option(parser, "--data-dir", "data_dir", metavar="DIR")
    _setting_option(parser, "--profiles-dir", "profiles_dir", metavar="DIR")
    _setting_option(parser, "--model", "model", metavar="NAME_OR_PATH")
    _setting_option(parser, "--log-level", "log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    _setting_option(parser, "--store-url", "store_url", metavar="URL")


def _add_data_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="FILE", help="labeled data: .jsonl or .csv")
    parser.add_argument("--text-field", default="text", help="field (column) holding the text (default: text)")
    parser.add_argument("--label-field", default="label", help="field (column) holding the label (default: label)")
    parser.add_argument(
        "--split-field", default="split", help="field (column) naming each row's split (default: split)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-latent",
        description=__doc__.split("\n")[0] if __doc__ else None,
        epilog="Every setting is also an environment variable MCP_LATENT_<NAME>; see the README's configuration table.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-latent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    _add_common(serve)
    _setting_option(serve, "--transport", "transport", choices=["stdio", "http"])
    _setting_option(serve, "--host", "host")
    _setting_option(serve, "--port", "port", type=int)
    _setting_option(serve, "--token-file", "token_file", metavar="FILE")
    _setting_option(serve, "--token", "token")
    serve.set_defaults(func=cmd_serve)

    evaluate = commands.add_parser("evaluate", help="print verdicts for a text")
    _add_common(evaluate)
    evaluate.add_argument("text", help="the text to judge")
    evaluate.add_argument("--profile", action="append", help="profile to apply (repeatable; default all)")
    evaluate.add_argument("--detail", action="store_true", help="show evidence")
    evaluate.add_argument("--json", action="store_true", help="print the JSON result")
    evaluate.set_defaults(func=cmd_evaluate)

    profiles = commands.add_parser("profiles", help="list, check, build, tune, evaluate and teach profiles")
    sub = profiles.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="list available profiles (reads the files only)")
    _add_common(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_profiles_list)

    check = sub.add_parser("check", help="validate every profile file")
    _add_common(check)
    check.set_defaults(func=cmd_profiles_check)

    build = sub.add_parser("build", help="build a profile from labeled JSONL/CSV")
    _add_common(build)
    _add_data_fields(build)
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
        "--target-oos-recall", type=float, default=0.8, help="share of out-of-scope texts to flag (simulated)"
    )
    build.add_argument("--exclude-label", action="append", help="leave a label out (repeatable)")
    build.add_argument("--no-fit", action="store_true", help="write the file only; fit on first use")
    build.set_defaults(func=cmd_profiles_build)

    ev = sub.add_parser("eval", help="measure a profile on labeled data (accuracy, coverage, calibration, plots)")
    _add_common(ev)
    _add_data_fields(ev)
    ev.add_argument("--profile", required=True, help="the profile to measure")
    ev.add_argument("--split", default="test", help="rows of this split are the test set (default: test)")
    ev.add_argument("--out", default="eval-out", help="directory for summary.json, summary.md and PNG plots")
    ev.add_argument("--no-baselines", action="store_true", help="skip the baseline classifiers")
    ev.set_defaults(func=cmd_profiles_eval)

    stats = sub.add_parser("stats", help="answered / escalated / taught counts and agreement per profile")
    _add_common(stats)
    stats.add_argument("--json", action="store_true", help="print the JSON summary")
    stats.add_argument("--plot", help="also write a PNG of the escalation rate over time to this path")
    stats.set_defaults(func=cmd_profiles_stats)

    tune = sub.add_parser("tune", help="move a built profile's operating point (no refit; prints the curve)")
    _add_common(tune)
    tune.add_argument("--profile", required=True, help="the profile to tune (a user profile)")
    tune.add_argument("--target-accuracy", type=float, help="answered-accuracy target")
    tune.add_argument("--target-oos-recall", type=float, help="share of out-of-scope texts to flag (simulated)")
    tune.set_defaults(func=cmd_profiles_tune)

    teach = sub.add_parser("teach", help="add one labeled exemplar to a profile")
    _add_common(teach)
    teach.add_argument("--profile", required=True, help="the profile to teach")
    teach.add_argument("--label", required=True, help="the correct label for the text")
    teach.add_argument("text", help="the exemplar text")
    teach.set_defaults(func=cmd_profiles_teach)

    ns = commands.add_parser("namespaces", help="list, export (JSONL on stdout) or drop namespaces")
    ns_sub = ns.add_subparsers(dest="namespaces_command", required=True, metavar="ACTION")
    ns_list = ns_sub.add_parser("list", help="namespaces with their handoff counts")
    _add_common(ns_list)
    ns_list.set_defaults(func=cmd_namespaces_list)
    ns_export = ns_sub.add_parser("export", help="every handoff of a namespace as JSONL (vectors included)")
    _add_common(ns_export)
    ns_export.add_argument("namespace", help="the namespace to export")
    ns_export.set_defaults(func=cmd_namespaces_export)
    ns_drop = ns_sub.add_parser("drop", help="delete a namespace and all its handoffs (needs --yes)")
    _add_common(ns_drop)
    ns_drop.add_argument("namespace", help="the namespace to delete (no default: name it)")
    ns_drop.add_argument("--yes", action="store_true", help="confirm the deletion (irreversible)")
    ns_drop.set_defaults(func=cmd_namespaces_drop)

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
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
    except LatentError as exc:
        print(f"mcp-latent: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    if argv is None and args.command == "serve":
        end_process_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
