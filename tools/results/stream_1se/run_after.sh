#!/usr/bin/env bash
# The one-standard-error margin alone (commit abe57d8, before the restate between refits): stream protocol, HWU64 and BANKING77, seeds $SEEDS (0 1),
# interleaved, sequential (as tools/results/stream_runs/run_all.sh), recording `uptime` before and after each run.
set -u
cd "$(dirname "$0")/../../.."
for seed in ${SEEDS:-0 1}; do
  for set in banking77 hwu64; do
    out=tools/results/stream_1se/${set}_s${seed}
    mkdir -p "$out"
    { echo "commit $(git rev-parse --short HEAD)"; echo "seed $seed"; echo "before $(date -u +%FT%TZ) $(uptime)"; } > "$out/load.txt"
    start=$(date +%s)
    timeout 1500 nice -n 5 .venv/bin/python tools/learning_curve.py --from /work/shared/data/$set/$set.jsonl \
      --out "$out" --seed $seed > "$out/stdout.txt" 2> "$out/stderr.txt"
    rc=$?
    { echo "after $(date -u +%FT%TZ) $(uptime)"; echo "rc $rc wall_s $(( $(date +%s) - start ))"; } >> "$out/load.txt"
  done
done
echo done > tools/results/stream_1se/ALL_DONE_${SEEDS:-0_1}
