#!/usr/bin/env python3
"""The first request after a fresh setup, against the second: does a new user wait for something hidden?

    .venv/bin/python bench/first_request.py            # a fresh cache: scripts/setup.sh converts into it, then the app
    .venv/bin/python bench/first_request.py --reuse    # the machine's own cache, as it is

By default ``LLM_LAB_CACHE`` points at a new temporary folder and setup's conversion step runs into it
(``python -m engine.packaged``, what ``scripts/setup.sh`` runs at install; the rest of setup, packages and the bundled
sentiment model, does not touch text generation), then ``python app.py`` starts offline with that cache, as
``./run.sh`` would. Once the page is served, ``/generate`` is called twice through gradio_client with the same greedy
request; it prints both times and, last, ``ratio: first/second`` (the issue asks for under 2).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from app_process import running_app  # noqa: E402

REQUEST = dict(prompt="Write one sentence about the sea.", max_new_tokens=24, temperature=0.0,
               repetition_penalty=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="use the machine's cache instead of a fresh one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="first-request-"))
    env = {}
    try:
        if not args.reuse:
            env["LLM_LAB_CACHE"] = str(work / "cache")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "engine.packaged", env["LLM_LAB_CACHE"]], check=True, cwd=ROOT,
                           env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"setup's conversion into a fresh cache: {time.perf_counter() - t0:.1f} s")
        from gradio_client import Client

        t0 = time.perf_counter()
        with running_app(work / "app", env=env) as app:
            print(f"app serving after {time.perf_counter() - t0:.1f} s")
            client = Client(app.url, verbose=False)
            times = []
            for which in ("first", "second"):
                t0 = time.perf_counter()
                text = client.predict(**REQUEST, api_name="/generate")
                times.append(time.perf_counter() - t0)
                print(f"{which} /generate: {times[-1]:.2f} s  {text[:60]!r}")
        print(f"ratio: {times[0] / times[1]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
