#!/usr/bin/env bash
# Refresh docs/img/ops-page.png and docs/img/ops-report.png: the browser test takes them (a real server, real
# calls, headless Chromium) and keeps them here. Needs chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
OPS_SCREENSHOT_DIR=docs/img exec .venv/bin/python -m pytest tests/test_ops_page.py -q "$@"
