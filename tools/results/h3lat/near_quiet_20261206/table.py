"""The near-quiet table of docs/benchmarks.md (main after the h3lat merge against main before it, alternated).

python3 tools/results/h3lat/near_quiet_20261206/table.py 'tools/results/h3lat/near_quiet_20261206/*_[0-9]'
"""

import glob
import os
import re
import sys

pat = sys.argv[1]
print(
    "| run | ping p50 ms | one embedding in-process p50 ms | `handoff` + 3 p50 ms | / (ping + embedding) | `evaluate` new text p50 ms (ratio) | `handoff` + 3 - new text ms | `embed` 1 p50 ms | server CPU ms handoff + 3 | first verdict / ping | RSS MiB |"
)
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for d in sorted(glob.glob(pat), key=lambda d: (d[-1], d)):
    md = open(d + "/bench.md").read()

    def g(name, md=md):
        m = re.search(r"^\| " + re.escape(name) + r" \| ([\d.]+) \|", md, re.M)
        return float(m.group(1))

    ping = g("ping (protocol floor)")
    emb = g("one embedding in-process (same text)")
    h3 = g("handoff + 3 verdicts")
    nt = g("evaluate new text")
    e1 = g("embed 1")
    fv = g("evaluate handle, first verdict")
    cpu = re.findall(r"^\| handoff \+ 3 verdicts \| ([\d.]+) \|$", md, re.M)[-1]
    rss = re.search(r"RSS, MiB \(peak\) \| (\d+)", md).group(1)
    print(
        f"| {os.path.basename(d)} | {ping:.2f} | {emb:.2f} | {h3:.2f} | {h3 / (ping + emb):.2f}x | {nt:.2f} ({nt / (ping + emb):.2f}x) | {h3 - nt:.2f} | {e1:.2f} | {cpu} | {fv / ping:.2f}x | {rss} |"
    )
