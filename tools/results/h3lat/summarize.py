"""One row per bench run of tools/results/h3lat/ (bench_<variant>_<n>/bench.json), with the load from runs.log."""

import json
import re
from pathlib import Path

HERE = Path(__file__).parent
loads = {}
for line in (HERE / "runs.log").read_text().splitlines():
    m = re.match(r"(\S+) (start|end) (\S+) (\d+) .*load (\S+)", line)
    if m:
        loads.setdefault((m[3], m[4]), {})[m[2]] = (m[1], m[5])
print(
    "| run (UTC start, load start-end) | ping p50 ms | one embedding in-process p50 ms | `handoff` + 3 p50 ms | "
    "`handoff` + 3 / (ping + embedding) | `evaluate` new text p50 ms (/ (ping + embedding)) | "
    "`handoff` + 3 - `evaluate` new text ms | `embed` 1 text p50 ms | server CPU ms: `handoff` + 3 / `embed` 1 / ping "
    "| RSS MiB |"
)
print("| --- |" + " ---: |" * 9)
for run in sorted(HERE.glob("bench_*/bench.json"), key=lambda p: (p.parent.name.split("_")[-1], p.stat().st_mtime)):
    variant, n = run.parent.name[len("bench_") :].rsplit("_", 1)
    d = json.loads(run.read_text())["paths"]["onnx"]
    t, ping = d["tools"], d["ping"]["p50_ms"]
    emb = t["one embedding in-process (same text)"]["p50_ms"]
    h, e, new = t["handoff + 3 verdicts"], t["embed 1"], t["evaluate new text"]["p50_ms"]
    (start, l0), (_, l1) = loads[(variant, n)]["start"], loads[(variant, n)].get("end", ("", "?"))
    print(
        f"| {variant} ({n}), {start[:5]}, {l0}-{l1} | {ping:.2f} | {emb:.2f} | {h['p50_ms']:.2f} | "
        f"{h['p50_ms'] / (ping + emb):.2f}x | {new:.2f} ({new / (ping + emb):.2f}x) | {h['p50_ms'] - new:.2f} | "
        f"{e['p50_ms']:.2f} | "
        f"{h['server_cpu_ms_mean']:.1f} / {e['server_cpu_ms_mean']:.1f} / {d['ping']['server_cpu_ms_mean']:.2f} | "
        f"{d['memory_mib']['VmRSS']:.0f} |"
    )
