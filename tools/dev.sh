#!/usr/bin/env bash
# One entry point for a fresh machine: set up .venv (idempotent), then serve or test.
#   tools/dev.sh setup          make .venv: torch 2.13.0 (CPU) first, then mcp-latent and its test extras;
#                               then export the shipped model to ONNX once and fit the shipped profiles into the
#                               shared profile cache (cached, offline; a no-op when warm)
#   tools/dev.sh serve [ARGS]   set up, then run `mcp-latent serve ARGS` (stdio by default)
#   tools/dev.sh test [ARGS]    set up, then run the test suite (pytest ARGS)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.mcp-latent-installed

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when the dependency list changed: a warm setup costs well under a second.
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
        install
    fi
    # Byte-compile the package (an editable install does not): a fresh clone's first server start would compile it.
    "$VENV/bin/python" -m compileall -q mcp_latent >&2
    # The serving path runs the shipped model on ONNX Runtime; exporting here (about 20 s, once per model
    # install) spares the first server that cost. A failure is not fatal: the server then falls back to torch.
    "$VENV/bin/python" -m mcp_latent.embedding.onnx_export >&2 || echo "ONNX export failed; servers will embed with torch" >&2
    # Fit the shipped profiles into the profile cache every data dir shares (~/.cache/mcp-latent/profiles): a fresh
    # data dir's first verdict then comes in seconds, not after minutes of fitting (a no-op when warm).
    "$VENV/bin/mcp-latent" profiles fit >&2 || echo "fitting the profiles failed; servers fit them on first use" >&2
}

install() {
    echo "installing into $VENV (torch 2.13.0 CPU first; an unpinned torch would pull a multi-GB CUDA build)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" >&2
    "$VENV/bin/python" -m pip install --quiet -e ".[test]" >&2
    sha256sum pyproject.toml | cut -d' ' -f1 > "$STAMP"
}

command=${1:-}
shift || true
case "$command" in
    setup) setup ;;
    serve) setup; exec "$VENV/bin/mcp-latent" serve "$@" ;;
    test)  setup; exec "$VENV/bin/python" -m pytest "$@" ;;
    *) echo "usage: tools/dev.sh setup|serve [ARGS]|test [ARGS]" >&2; exit 2 ;;
esac
