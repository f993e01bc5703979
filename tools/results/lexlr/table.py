"""The docs table of the `lexlr` replays: every run under this folder (or the folder given), both arms.

python3 tools/results/lexlr/table.py [FOLDER]
"""

import glob
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
runs = {}
for path in sorted(glob.glob(str(root / "*" / "summary.json"))):
    for run in json.loads(Path(path).read_text())["runs"]:
        # hwu64_s0_v1 holds the first version of the expert (commit 9a6d0a8), beside its frozen baseline
        arm = "frozen-lr v1" if "_v1" in path and run["arm"] == "frozen-lr" else run["arm"]
        runs[(run["data"], run["seed"], arm)] = run


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


print(
    "| data | seed | arm | escalated last third | agreement last third | at 97% (hindsight) | refits s | run s | load at end (1/5/15 min) |"
)
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
for key in sorted(runs):
    run, last = runs[key], runs[key]["last_third"]
    load = " / ".join(f"{x:.1f}" for x in run["load"])
    print(
        f"| {key[0]} | {key[1]} | {key[2]} | {pct(last['escalated'])} | {pct(last['answered_agreement'])} | "
        f"{pct(last['escalated_at_97_hindsight'])} | {run['refit_seconds']:.0f} | {run['seconds']:.0f} | {load} |"
    )
