"""The handoff_spans_*.json of this folder side by side (wall / thread CPU, ms per call), columns in run order."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
names = sys.argv[1:] or ["served_1", "write_first_1", "served_2", "write_first_2"]
runs = [json.loads((HERE / f"handoff_spans_{name}.json").read_text()) for name in names]
print("| ms per `handoff` + 3 verdicts (mean of 500): wall / thread CPU | " + " | ".join(names) + " |")
print("| --- |" + " ---: |" * len(names))
for row in runs[0]["wall_ms"]:
    depth = (len(row) - len(row.lstrip(" "))) // 2
    label = "&nbsp;&nbsp;" * depth + row.strip()
    cells = [f"{r['wall_ms'][row]:.2f} / {r['cpu_ms'][row]:.2f}" for r in runs]
    print(f"| {label} | " + " | ".join(cells) + " |")
