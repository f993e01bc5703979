"""`mcp-latent profiles ...`: list, check, build, tune, eval, teach, stats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mcp_latent.cli.common import print_json, service_from_args, settings_from_args
from mcp_latent.cli.store import store_from_args


def _registry(args: argparse.Namespace) -> Any:
    """The profiles as the server would load them: files plus the exemplars taught into the store (opened
    without the model)."""
    from mcp_latent.profiles.registry import ProfileRegistry

    settings = settings_from_args(args)
    store = store_from_args(args) if settings.store_url or settings.data_dir.exists() else None
    try:
        registry = ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles, store=store)
        registry.load_all()
    finally:
        if store is not None:
            store.close()
    return registry


def cmd_profiles_list(args: argparse.Namespace) -> int:
    from mcp_latent.profiles.fitter import ProfileFitter
    from mcp_latent.profiles.report import summary

    settings = settings_from_args(args)
    fits = ProfileFitter.for_settings(settings)  # stored fits only, found by the configured model's id
    profiles = []
    registry = _registry(args)
    skipped = [{"file": str(path), "error": error} for path, error in registry.skipped.items()]
    for profile in registry.profiles.values():  # no fit: a stored one tells where each profile answers
        listed = profile.summary()
        calibration = fits.cached_calibration(profile)
        if calibration is not None:
            listed.update(summary(calibration, profile.spec))
        profiles.append(listed)
    # Exit 0 when something loaded (the server would serve it); a skipped file is reported, not fatal.
    code = 0 if profiles or not skipped else 1
    if args.json:  # stdout keeps its shape (the list); what was skipped goes to stderr, one line per file
        print_json(profiles)
        for entry in skipped:
            print(f"mcp-latent: skipped {entry['error']}", file=sys.stderr)
        return code
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
    for entry in skipped:
        print(f"SKIPPED {entry['error']}")
    return code


def cmd_profiles_check(args: argparse.Namespace) -> int:
    from mcp_latent.profiles.registry import ProfileRegistry

    settings = settings_from_args(args)
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
    from mcp_latent.plotting import PlotsUnavailable
    from mcp_latent.profiles.report import plot, record, table, warning
    from mcp_latent.profiles.spec import read_profile_file, write_profile_file

    cal = fitted.calibration
    for line in table(cal, spec):
        print(line, file=sys.stderr)
    try:
        png = plot(cal, spec, path.with_suffix(".curve.png"))
        if png is not None:
            print(f"wrote {png}", file=sys.stderr)
    except PlotsUnavailable as exc:  # the curve is a picture of the table above: the profile is built without it
        print(f"no curve plot: {exc}", file=sys.stderr)
    problem = warning(cal, spec)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    if cal.evidence is not None:
        changes = {**changes, "operating_point": record(cal)}
    written = read_profile_file(path)  # the file as written: without exemplars taught at run time
    write_profile_file(written.model_copy(update=changes), path)


def cmd_profiles_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mcp_latent.profiles.builder import build_profile
    from mcp_latent.profiles.fitter import flatten
    from mcp_latent.profiles.registry import Profile
    from mcp_latent.profiles.report import knee_target

    settings = settings_from_args(args)
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
        off_topic=args.off_topic,
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    if args.no_fit:
        return 0
    # Embed and fit now (cached under the data dir), so `serve` starts without re-embedding.
    from mcp_latent.embedding.factory import load_configured_embedder
    from mcp_latent.profiles.fitter import ProfileFitter

    embedder = load_configured_embedder(settings)
    profile = Profile(spec=spec, path=path, builtin=False)
    fitter = ProfileFitter.for_settings(settings, embedder)
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
    from mcp_latent.embedding.factory import load_configured_embedder
    from mcp_latent.errors import InvalidInput
    from mcp_latent.profiles.fitter import ProfileFitter

    settings = settings_from_args(args)
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
    spec = profile.spec = profile.spec.model_copy(update=changes)  # the file's exemplars: the built fit's
    fitted = ProfileFitter.for_settings(settings).cached(profile)  # the model is loaded only if none is stored
    how = "no refit: the point is chosen from the stored cross-validation"
    if fitted is None:
        how = "fitted once; later tunes reuse it"
        print(f"no cached fit of {args.profile}; fitting it (once)", file=sys.stderr)
        embedder = load_configured_embedder(settings)
        fitted = ProfileFitter.for_settings(settings, embedder).fitted(profile)
    if fitted.calibration.evidence is None:
        raise InvalidInput(f"profile {args.profile!r} has too few exemplars per label to estimate a curve.")
    _show_operating_point(fitted, spec, profile.path, changes)
    print(f"updated {profile.path} ({how})", file=sys.stderr)
    return 0


def cmd_profiles_eval(args: argparse.Namespace) -> int:
    from mcp_latent.eval.quality import run_evaluation

    settings = settings_from_args(args)
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
    service = service_from_args(args)
    try:
        print_json(service.teach(args.profile, args.label, text=args.text))
    finally:
        service.close()
    return 0


def cmd_profiles_stats(args: argparse.Namespace) -> int:
    from mcp_latent.service.usage_stats import ProfileStats, plot_escalation

    settings = settings_from_args(args)  # reads the data dir's stats file only: no model, no fit
    stats = ProfileStats(settings.data_dir / "stats.sqlite")
    summary = stats.summary()
    _add_teachers(args, summary)
    if args.plot:
        print(f"wrote {plot_escalation(stats, sorted(summary), Path(args.plot))}", file=sys.stderr)
    if args.json:
        print_json(summary)
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
        teachers = ", ".join(f"{teacher} {n}" for teacher, n in (s.get("by_teacher") or {}).items())
        if teachers:
            print(f"{'':<16} taught exemplars by teacher: {teachers}")
    return 0


def _add_teachers(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Each profile's taught exemplars (not reverted) per teacher, from the store: every server's teaches."""
    from mcp_latent.cli.store import store_from_args
    from mcp_latent.errors import LatentError
    from mcp_latent.service.teachers import taught_by_teacher

    try:
        store = store_from_args(args)
    except LatentError as exc:  # the counts above need only the stats file: still show them
        print(f"(teachers not shown: {exc})", file=sys.stderr)
        return
    try:
        taught_by_teacher(store, summary)
    finally:
        store.close()


def cmd_profiles_fit(args: argparse.Namespace) -> int:
    """Embed and fit the profile files now into the shared profile cache (every data dir of the user reads it), so
    no server's first call pays for it. `tools/dev.sh setup` runs it; a warm cache makes it a no-op."""
    import time

    from mcp_latent.embedding.factory import load_configured_embedder
    from mcp_latent.profiles.fitter import ProfileFitter
    from mcp_latent.profiles.registry import ProfileRegistry

    settings = settings_from_args(args)
    registry = ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles)  # the files' own exemplars
    registry.load_all()
    for entry in registry.skipped.values():
        print(f"mcp-latent: skipped {entry}", file=sys.stderr)
    names = args.names or sorted(registry.profiles)
    profiles = [registry.get(name) for name in names]  # NotFound (exit 2) names the profiles there are
    fitter = ProfileFitter.for_settings(settings, load_configured_embedder(settings))
    for profile in profiles:
        started = time.monotonic()
        cached = fitter.cached(profile) is not None
        if not cached:
            fitter.fitted(profile)
        took = time.monotonic() - started
        print(f"{profile.name:<16} {'cached' if cached else 'fitted'} in {took:.1f} s -> {fitter.cache_dir}")
    return 0
