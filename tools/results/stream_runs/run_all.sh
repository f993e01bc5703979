#!/usr/bin/env bash
# The 3x2 stream-protocol runs of issue 24 (HWU64, BANKING77; shuffle seeds 0, 1, 2), interleaved so that a cut-short
# session still has as many runs of each set. Records `uptime` before and after each run beside its outputs.
set -u
cd "$(dirname "$0")/../../.."
for run in 1 2 3; do
  seed=$((run - 1))
  for set in hwu64 banking77; do
    out=tools/results/stream_runs/${set}_${run}
    mkdir -p "$out"
    { echo "commit $(git rev-parse --short HEAD)"; echo "seed $seed"; echo "before $(date -u +%FT%TZ) $(uptime)"; } > "$out/load.txt"
    start=$(date +%s)
    timeout 1500 nice -n 5 .venv/bin/python tools/learning_curve.py --from /work/shared/data/$set/$set.jsonl \
      --out "$out" --seed $seed > "$out/stdout.txt" 2> "$out/stderr.txt"
    rc=$?
    { echo "after $(date -u +%FT%TZ) $(uptime)"; echo "rc $rc wall_s $(( $(date +%s) - start ))"; } >> "$out/load.txt"
  done
done
echo done > tools/results/stream_runs/ALL_DONE
