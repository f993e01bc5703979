#!/usr/bin/env bash
# The stream protocol (tools/learning_curve.py) on HWU64 and BANKING77 for each shuffle seed, interleaved per seed so
# that a run cut short still has as many runs of each set, one after another (never two at once on 2 cores). Writes
# OUT/<set>_s<seed>/ with learning_curve.py's outputs and load.txt (commit, seed, `uptime` before and after, exit code
# and wall seconds), which tools/stream_spread.py reads.
#   tools/stream_runs.sh OUT [SEED ...]        # seeds default to 0 1 2
# The data sets are read from $STREAM_DATA/<set>/<set>.jsonl, ../shared/data by default (beside the checkout; a git
# worktree elsewhere names it: STREAM_DATA=/work/shared/data tools/stream_runs.sh OUT).
set -u
out_root=${1:?usage: tools/stream_runs.sh OUT [SEED ...]}
shift
seeds=${*:-0 1 2}
cd "$(dirname "$0")/.."
data=${STREAM_DATA:-../shared/data}
for seed in $seeds; do
  for set in hwu64 banking77; do
    out=$out_root/${set}_s${seed}
    mkdir -p "$out"
    { echo "commit $(git rev-parse --short HEAD)"; echo "seed $seed"; echo "before $(date -u +%FT%TZ) $(uptime)"; } > "$out/load.txt"
    start=$(date +%s)
    timeout 1500 nice -n 5 .venv/bin/python tools/learning_curve.py --from "$data/$set/$set.jsonl" \
      --out "$out" --seed "$seed" > "$out/stdout.txt" 2> "$out/stderr.txt"
    rc=$?
    { echo "after $(date -u +%FT%TZ) $(uptime)"; echo "rc $rc wall_s $(( $(date +%s) - start ))"; } >> "$out/load.txt"
  done
done
