"""One row per bench run of tools/results/h3lat/ (bench_<variant>_<n>/bench.json), with the load from runs.log."""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
loads = {}
for line in (HERE / "runs.log").read_text().splitlines():
    m = re.match(r"(\S+) (start|end) (\S+) (\d+) .*load (\S+)", line)
    if m:
        loads.setdefault((m[3], m[4]), {})[m[2]] = (m[1], m[5])
print(
    "| run (UTC start, load start-end) | ping p50 ms | one embedding in-process p50 ms | `handoff` + 3 p50 ms | "
    "`handoff` + 3 / (ping + embedding) | new text / (ping + embedding) | first verdict on a handle / ping | "
    "server CPU ms: `handoff` + 3 / ping | RSS MiB |"
)
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for run in sorted(HERE.glob("bench_*/bench.json"), key=lambda p: (p.parent.name.split("_")[-1], p.stat().st_mtime)):
    variant, n = run.parent.name[len("bench_") :].rsplit("_", 1)
    d = json.loads(run.read_text())["paths"]["onnx"]
    t, ping = d["tools"], d["ping"]["p50_ms"]
    emb = t["one embedding in-process (same text)"]["p50_ms"]
    h = t["handoff + 3 verdicts"]
    (start, l0), (_, l1) = loads[(variant, n)]["start"], loads[(variant, n)].get("end", ("", "?"))
    print(
        f"| {variant} ({n}), {start[:5]}, {l0}-{l1} | {ping:.2f} | {emb:.2f} | {h['p50_ms']:.2f} | "
        f"{h['p50_ms'] / (ping + emb):.2f}x | {t['evaluate new text']['p50_ms'] / (ping + emb):.2f}x | "
        f"{t['evaluate handle, first verdict']['p50_ms'] / ping:.2f}x | "
        f"{h['server_cpu_ms_mean']:.1f} / {d['ping']['server_cpu_ms_mean']:.2f} | {d['memory_mib']['VmRSS']:.0f} |"
    )
