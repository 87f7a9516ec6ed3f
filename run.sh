#!/usr/bin/env bash
# Set up what is missing, then run the app on http://127.0.0.1:7860 (flags are passed to app.py; see --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python app.py "$@"
