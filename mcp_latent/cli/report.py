"""`mcp-latent report` (the usage page as one HTML file, for stdio users) and `mcp-latent setup` (prepare a fresh
install: the ONNX export and every profile's fit, so the first server answers at once)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcp_latent.cli.common import service_from_args, settings_from_args


def profile_names(settings) -> list[str]:
    """Names of the valid profile files (read from the files only: no model, no store)."""
    from mcp_latent.errors import ProfileError
    from mcp_latent.profiles.registry import ProfileRegistry
    from mcp_latent.profiles.spec import read_profile_file

    names = []
    for path, error in ProfileRegistry(settings.user_profiles_dir, settings.builtin_profiles).check_all():
        if error is None:
            try:
                names.append(read_profile_file(path).name)
            except ProfileError:  # changed since the check: leave it out, `doctor` names it
                pass
    return sorted(set(names))


def cmd_report(args: argparse.Namespace) -> int:
    from mcp_latent.atomic_files import replacing
    from mcp_latent.ops.dashboard import gather
    from mcp_latent.ops.page import render
    from mcp_latent.service.usage_stats import ProfileStats

    settings = settings_from_args(args)  # reads the data dir's stats file only: no model, no store
    stats = ProfileStats.for_settings(settings)
    board = gather(stats, settings.llm_tokens_per_judgement, profile_names(settings))
    out = Path(args.out)
    with replacing(out) as tmp:
        tmp.write_text(render(board), encoding="utf-8")
    print(
        f"wrote {out} ({board.llm_calls_saved:,} verdicts answered, {board.escalated:,} escalated, "
        f"{len(board.profiles)} profiles)",
        file=sys.stderr,
    )
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Export the shipped model to ONNX (once, cached) and fit every profile (cached), reporting each step."""
    import time

    from mcp_latent.errors import LatentError

    started = time.monotonic()
    service = service_from_args(args)  # loads the model: the ONNX export is made here when missing
    failed = []
    try:
        status = service.status()
        print(f"model ready: {status['model']} ({status['backend']})", file=sys.stderr)
        for name in sorted(service.live):
            began = time.monotonic()
            try:
                service.fitted_profile(name)  # waits for the fit (or reads the cached one)
            except LatentError as exc:  # one bad profile does not stop the others
                failed.append(name)
                print(f"profile {name}: FAILED: {exc}", file=sys.stderr)
                continue
            print(f"profile {name}: fitted ({time.monotonic() - began:.1f} s)", file=sys.stderr)
    finally:
        service.close()
    if failed:
        print(f"setup done with {len(failed)} failed profile(s): {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"setup done in {time.monotonic() - started:.1f} s; `mcp-latent serve` now answers at once", file=sys.stderr)
    return 0
