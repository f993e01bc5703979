#!/usr/bin/env bash
# The long fuzz run: tests/test_fuzz.py with 5,000 generated calls (CI runs 500), every tool and argument name,
# failing on any "internal error". Prints the figure docs/first-hour.md quotes.
#   tools/fuzz.sh [EXAMPLES]     default 5000
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-5000}
started=$(date +%s)
FUZZ_EXAMPLES=$examples .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py
echo "fuzz run: $examples examples asked, $(( $(date +%s) - started )) s wall" \
     "(commit $(git rev-parse --short HEAD), $(nproc) cores)"
