"""The app as a user meets it: ``python app.py`` in its own process on a free loopback port, for the browser, load,
hostile-input and safety suites (which talk to it over HTTP only, as a browser or a script would).

The app uses the machine's normal model cache (the packaged conversions of SmolLM2 and Whisper take minutes the first
time, then milliseconds), runs offline, and keeps its uploads (``GRADIO_TEMP_DIR``) and its own temporary files
(``TMPDIR``) in folders the test gives it, so that what it leaves behind can be checked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240.0  # importing torch and gradio on a busy 2-core machine is slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(demo) -> Iterator["Client"]:
    """``demo`` (a gradio Blocks, one tab or several) queued and served in this process on a free loopback port,
    and a gradio_client for it, as a script user would call it; closed on exit."""
    from gradio_client import Client

    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@dataclasses.dataclass
class AppProcess:
    """A running ``app.py``: its URL, its process, and the folders it writes temporary files to."""

    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    gradio_temp: Path  # GRADIO_TEMP_DIR: gradio's uploads and the files it serves
    tmpdir: Path  # TMPDIR: everything else the app writes through ``tempfile``

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def memory(self) -> dict[str, int]:
        """Resident memory of the app process in bytes: ``VmRSS`` (now) and ``VmHWM`` (its peak so far)."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024  # reported in kB
        return values

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def responds(self, timeout: float = 10.0) -> bool:
        """The page is served (HTTP 200), i.e. the server is up and not wedged."""
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(self.url, timeout=timeout) as r:
                return r.status == 200
        return False


@contextlib.contextmanager
def running_app(folder: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> Iterator[AppProcess]:
    """Start ``app.py`` (with extra ``env`` variables and command-line ``args``), wait until it serves, yield it, then
    stop it (SIGTERM to its process group, SIGKILL if it does not go). Its log is ``folder/app.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    gradio_temp, tmpdir = folder / "gradio-temp", folder / "tmp"
    gradio_temp.mkdir(exist_ok=True)
    tmpdir.mkdir(exist_ok=True)
    port = free_port()
    full_env = dict(os.environ, GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                    GRADIO_TEMP_DIR=str(gradio_temp), TMPDIR=str(tmpdir), GRADIO_ANALYTICS_ENABLED="False",
                    PYTHONUNBUFFERED="1")
    full_env.pop("GRADIO_SERVER_NAME", None)  # the app's own default (loopback) unless a test says otherwise
    full_env.update(env or {})
    log_path = folder / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", *(args or [])], cwd=ROOT, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    app = AppProcess(f"http://127.0.0.1:{port}/", port, process, log_path, gradio_temp, tmpdir)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not app.responds(timeout=5):
            if not app.alive():
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{app.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not serve within {START_TIMEOUT_S:.0f} s:\n{app.log()[-3000:]}")
            time.sleep(0.5)
        yield app
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def speech_wav(path: Path, sentence: str = "The quick brown fox jumps over the lazy dog.") -> Path:
    """``sentence`` spoken by espeak-ng, as a WAV file (16-bit mono, 22 kHz)."""
    if not shutil.which("espeak-ng"):
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); .ci/run installs it")
    subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True, capture_output=True)
    return path


def files_under(folder: Path) -> set[Path]:
    """Every file below ``folder``, as paths relative to it."""
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}
