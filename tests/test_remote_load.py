"""Load: the app in front of a remote backend, on loopback only.

llama.cpp's ``llama-server`` serves SmolLM2 (4 parallel slots); the app (``python app.py``, its own process) has it
as its default text-generation model through an ``openai:`` entry in ``LLM_LAB_MODELS``. :data:`USERS` simulated
users for :data:`DURATION_S` seconds: half call the Text generation tab's ``/generate`` through ``gradio_client``,
half the app's own ``/v1/chat/completions`` (streaming). Each request carries a code of its own that must come back
(greedy continuation of "Code: N. Code: N. Code:"), so answers cannot be crossed between users. The figures (requests,
latency percentiles, new tokens per second through the app) go to ``artifacts/load/through-app-*.json`` and
docs/scaling.md. The same load on the app's own engine (the same model, run by torch in the app) is the comparison.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import random
import time

import httpx
import pytest
from gradio_client import Client

import llama_server
from app_process import ROOT, running_app
from test_load import percentile

pytestmark = pytest.mark.slow

USERS = 16
DURATION_S = 60.0
MAX_REQUESTS_PER_USER = 40
REQUEST_TIMEOUT_S = 120.0
NEW_TOKENS = 6
REPORT = ROOT / "artifacts" / "load"
REMOTE = "smollm2-remote"
LOCAL = "SmolLM2-135M-Instruct"  # the same model in the app's own engine, for comparison


@dataclasses.dataclass
class Outcome:
    user: int
    path: str
    seconds: float
    error: str | None = None


def prompt_for(code: str) -> str:
    return f"Code: {code}. Code: {code}. Code: {code}. Code:"


def one_user(index: int, url: str, model: str, until: float) -> list[Outcome]:
    rng = random.Random(index)
    via_api = index % 2 == 1
    client = None if via_api else Client(url, verbose=False)
    outcomes = []
    for _ in range(MAX_REQUESTS_PER_USER):
        if time.monotonic() >= until:
            break
        code = str(rng.randint(10_000, 99_999))
        t0 = time.perf_counter()
        try:
            if via_api:
                text = ""
                body = {"model": model, "prompt": prompt_for(code), "max_tokens": NEW_TOKENS, "temperature": 0,
                        "stream": True}
                with httpx.stream("POST", f"{url}v1/completions", json=body, timeout=REQUEST_TIMEOUT_S) as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if line.startswith("data: {"):
                            text += json.loads(line[6:])["choices"][0]["text"]
            else:
                text = client.submit(prompt=prompt_for(code), model=model, max_new_tokens=NEW_TOKENS, temperature=0,
                                     repetition_penalty=1.0, top_k=0, chat=False,
                                     api_name="/generate").result(timeout=REQUEST_TIMEOUT_S)
            error = None if code in text else f"not this user's answer: {text[:100]!r}"
        except Exception as e:  # every failure counts against the test; keep going to see them all
            error = f"{type(e).__name__}: {str(e)[:300]}"
        outcomes.append(Outcome(index, "/v1/completions" if via_api else "/generate", time.perf_counter() - t0,
                                error))
    return outcomes


@pytest.mark.parametrize("backend", ["llama-server", "local"])
def test_sixteen_users_through_the_app(tmp_path, backend):
    """The app in front of llama-server, and (for comparison) the same load on the app's own engine."""
    with contextlib.ExitStack() as stack:
        if backend == "llama-server":
            base_url, port = stack.enter_context(llama_server.running(tmp_path / "llama-server.log"))
            models = {"models": [{"name": REMOTE, "task": "text-generation", "family": "openai-compatible",
                                  "source": f"openai:{base_url}", "remote_model": llama_server.ALIAS, "chat": True,
                                  "default": True}]}
            env, model = {"LLM_LAB_MODELS": json.dumps(models), "LLM_LAB_PRELOAD": "none"}, REMOTE
        else:
            env, model = {}, LOCAL
        app = stack.enter_context(running_app(tmp_path / "app", env=env))
        if backend == "local":  # load it first: the figures are about serving, not loading
            httpx.post(f"{app.url}v1/completions", json={"model": LOCAL, "prompt": "Hi", "max_tokens": 1},
                       timeout=REQUEST_TIMEOUT_S).raise_for_status()
        until = time.monotonic() + DURATION_S
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(USERS) as pool:
            outcomes = [o for user in pool.map(lambda i: one_user(i, app.url, model, until), range(USERS))
                        for o in user]
        wall = time.perf_counter() - t0
        assert app.alive()

    failures = [o for o in outcomes if o.error]
    seconds = [o.seconds for o in outcomes]
    summary = {
        "users": USERS, "duration_s": DURATION_S, "wall_s": round(wall, 1), "requests": len(outcomes),
        "backend": backend, "failures": len(failures), "requests_per_s": round(len(outcomes) / wall, 2),
        "new_tokens_per_s": round(len(outcomes) * NEW_TOKENS / wall, 1), "p50_s": round(percentile(seconds, 50), 2),
        "p95_s": round(percentile(seconds, 95), 2), "max_s": round(max(seconds), 2),
        "per_path": {path: {"requests": len(s), "p50_s": round(percentile(s, 50), 2),
                            "p95_s": round(percentile(s, 95), 2)}
                     for path in sorted({o.path for o in outcomes})
                     for s in [[o.seconds for o in outcomes if o.path == path]]},
        "failed": [dataclasses.asdict(o) for o in failures[:20]],
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / f"through-app-{backend}.json").write_text(json.dumps(summary, indent=2))
    print(f"\nload through the app, {backend}:", json.dumps(summary, indent=2))
    assert failures == [], f"{len(failures)} of {len(outcomes)} requests failed: {summary['failed']}"
    assert len(outcomes) >= USERS * 2 and {o.path for o in outcomes} == {"/generate", "/v1/completions"}
