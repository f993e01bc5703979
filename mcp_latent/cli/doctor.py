"""`mcp-latent doctor`: check the install and the configuration, print each finding with its fix, exit 1 when
something would not work (warnings alone exit 0)."""

from __future__ import annotations

import argparse
import json

from mcp_latent.cli.common import settings_from_args

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def cmd_doctor(args: argparse.Namespace) -> int:
    from mcp_latent.ops.doctor import run_checks

    settings = settings_from_args(args)
    checks = run_checks(settings, compare_vectors=not args.quick, min_free_mb=args.min_free_mb)
    failed = [c for c in checks if c.status == "fail"]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=1, ensure_ascii=False))
    else:
        for check in checks:
            print(f"[{MARKS[check.status]}] {check.name}: {check.detail}")
            if check.fix:
                print(f"        fix: {check.fix}")
        warned = sum(c.status == "warn" for c in checks)
        print(f"\n{len(failed)} problem(s), {warned} warning(s)" if failed or warned else "\nall checks passed")
    return 1 if failed else 0
