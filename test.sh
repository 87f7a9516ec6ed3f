#!/usr/bin/env bash
# Set up what is missing (with the test tools), then run the whole test suite offline. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
