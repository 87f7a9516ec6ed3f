"""Load: simulated users through ``gradio_client`` against the app in its own process, on loopback only.

:data:`USERS` users, each with its own client (its own gradio session), go round every tab for :data:`DURATION_S`
seconds (at most :data:`MAX_REQUESTS_PER_USER` requests each). Every request must succeed, within
:data:`REQUEST_TIMEOUT_S`, with its own answer: each user sends unique content and checks that it comes back (a code
in the QA context must be the answer, a number in the text to translate must be in the translation, a code repeated
in a prompt must be continued, a user's own recording must be what is transcribed, a user's prompt length must be what
the next-token lens read). Memory: the app's peak resident memory (``VmHWM``) must stay under its resident memory at
start (Python, torch and gradio, no model) + the configured model budget + :data:`WORKING_MARGIN_GB` for activations
and buffers; and the engine's own count of loaded weights must stay within the budget.

Then a second app with a tiny queue gets a burst: everyone gets an answer or a clear "busy, try again", quickly.
A summary (requests, latency percentiles, failures, memory) is printed and written to ``artifacts/load/``.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import random
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file

from app_process import ROOT, AppProcess, running_app, speech_wav

pytestmark = pytest.mark.slow  # apps of their own, and minutes of model work

USERS = 16
DURATION_S = 60.0  # users start new requests for this long; the requests in flight then finish
MAX_REQUESTS_PER_USER = 12
REQUEST_TIMEOUT_S = 240.0  # a request that takes longer counts as a hang
BUDGET_GB = 1.5  # LLM_LAB_MEMORY_BUDGET_GB: SmolLM2 (~0.5 GB) and Whisper base (~0.3 GB) fit
WORKING_MARGIN_GB = 0.75  # activations, KV caches, decoded audio and request buffers on top of the weights
BURST = 16  # simultaneous requests against a queue of one
BUSY_WITHIN_S = 20.0  # a "busy" answer comes this fast (the model's answers take longer)
REPORT = ROOT / "artifacts" / "load"
SENTENCES = {  # what each user's recording says, and words that only it contains
    "fox": ("The quick brown fox jumps over the lazy dog.", ("fox", "lazy")),
    "apples": ("Seven red apples are on the kitchen table.", ("apple", "kitchen")),
    "train": ("Our train leaves the station at noon.", ("train", "station")),
    "garden": ("My sister plants flowers in the garden every spring.", ("garden", "flower")),
}


@dataclasses.dataclass
class Outcome:
    user: int
    api: str
    seconds: float
    error: str | None = None  # None: it succeeded and its answer was this user's own


class User:
    """One simulated person: their own client, unique content, and a check that each answer is theirs."""

    def __init__(self, index: int, url: str, audio: dict[str, Path]) -> None:
        self.index = index
        self.client = Client(url, verbose=False)
        self.rng = random.Random(index)
        self.sentence = list(SENTENCES)[index % len(SENTENCES)]
        self.audio = audio[self.sentence]
        self.lens_prompt = " ".join(["one"] * (index + 2))  # a different length for every user
        self.lens_tokens: set[int] = set()

    def code(self) -> str:
        return str(self.rng.randint(10_000, 99_999))

    # Each request: (endpoint, arguments, check of the answer) with fresh unique content.
    def qa(self):
        code = self.code()
        context = f"User {self.index} wrote this note. The locker code is {code}. Nobody else knows it."
        return "/answer", dict(question="What is the locker code?", context=context), lambda r: code in r["answer"]

    def translate(self):
        code = self.code()
        return ("/translate", dict(text=f"My number is {code}.", source_lang="en", target_lang="de"),
                lambda r: code in r["text"])

    def generate(self):
        code = self.code()
        prompt = f"Code: {code}. Code: {code}. Code: {code}. Code:"
        return ("/generate", dict(prompt=prompt, max_new_tokens=6, temperature=0, repetition_penalty=1.0, chat=False),
                lambda r: code in r)

    def classify(self):
        return "/classify", dict(text="I loved this film, the acting was wonderful."), lambda r: r["label"] != ""

    def transcribe(self):
        words = SENTENCES[self.sentence][1]
        others = [w for name, (_, ws) in SENTENCES.items() if name != self.sentence for w in ws]

        def own(result) -> bool:
            text = result[0].lower()
            return any(w in text for w in words) and not any(w in text for w in others)

        return "/transcribe", dict(audio=handle_file(str(self.audio))), own

    def next_token(self):
        def own(result) -> bool:
            self.lens_tokens.add(result["prompt_tokens"])
            return len(result["tokens"]) == 5

        return "/next_token", dict(prompt=self.lens_prompt, top_k=5), own

    def run(self, until: float) -> list[Outcome]:
        tasks = [self.qa, self.translate, self.generate, self.classify, self.transcribe, self.next_token]
        outcomes = []
        for n in range(MAX_REQUESTS_PER_USER):
            if time.monotonic() >= until:
                break
            api, kwargs, check = tasks[(self.index + n) % len(tasks)]()
            t0 = time.perf_counter()
            try:
                result = self.client.submit(api_name=api, **kwargs).result(timeout=REQUEST_TIMEOUT_S)
                error = None if check(result) else f"not this user's answer: {str(result)[:200]!r}"
            except Exception as e:  # any failure is a failure of the test; keep going to see them all
                error = f"{type(e).__name__}: {str(e)[:300]}"
            outcomes.append(Outcome(self.index, api, time.perf_counter() - t0, error))
        return outcomes


class MemoryWatch:
    """Samples the app's resident memory every half second."""

    def __init__(self, app: AppProcess) -> None:
        self.app = app
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(self.app.memory()["VmRSS"])

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def engine_weights_mb(client: Client) -> tuple[float, float]:
    """(MB of loaded weights, budget in GB) as the Engine tab reports them."""
    status = client.predict(api_name="/engine_status")[0]
    used, budget = re.search(r"Memory:\*\* ([\d,.]+) MB of a ([\d.]+) GB budget", status).groups()
    return float(used.replace(",", "")), float(budget)


@pytest.fixture(scope="module", autouse=True)
def converted_models() -> None:
    """The packaged models converted into the app's cache first, as scripts/setup.sh does: the load test measures
    serving, not the one-time conversion (a minute, and the memory of a dequantized GGUF), which would otherwise fall
    inside it on a machine whose cache does not hold them yet."""
    from engine.config import default_cache_dir
    from engine.packaged import materialize_installed

    outcomes = materialize_installed(default_cache_dir() / "packaged")
    assert not [e for e in outcomes.values() if isinstance(e, Exception)], outcomes


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("voices")
    return {name: speech_wav(folder / f"{name}.wav", text) for name, (text, _) in SENTENCES.items()}


def test_sixteen_users_for_a_minute(tmp_path, recordings):
    env = {"LLM_LAB_MEMORY_BUDGET_GB": str(BUDGET_GB)}
    with running_app(tmp_path / "app", env=env) as app:
        start_rss = app.memory()["VmRSS"]  # Python, torch, gradio and the UI; no model is loaded yet
        with cf.ThreadPoolExecutor(USERS) as pool:
            users = list(pool.map(lambda i: User(i, app.url, recordings), range(USERS)))
            with MemoryWatch(app) as watch:
                until = time.monotonic() + DURATION_S
                t0 = time.perf_counter()
                outcomes = [o for user_outcomes in pool.map(lambda u: u.run(until), users) for o in user_outcomes]
                wall = time.perf_counter() - t0
        peak_rss = app.memory()["VmHWM"]
        weights_mb, budget_gb = engine_weights_mb(users[0].client)
        assert app.alive()

    failures = [o for o in outcomes if o.error]
    seconds = [o.seconds for o in outcomes]
    limit = start_rss + (BUDGET_GB + WORKING_MARGIN_GB) * 2**30
    summary = {
        "users": USERS, "duration_s": DURATION_S, "wall_s": round(wall, 1), "requests": len(outcomes),
        "failures": len(failures), "p50_s": round(percentile(seconds, 50), 2),
        "p95_s": round(percentile(seconds, 95), 2), "max_s": round(max(seconds), 2),
        "per_endpoint": {api: {"requests": len(s), "p50_s": round(percentile(s, 50), 2),
                               "p95_s": round(percentile(s, 95), 2)}
                         for api in sorted({o.api for o in outcomes})
                         for s in [[o.seconds for o in outcomes if o.api == api]]},
        "rss_start_mb": round(start_rss / 2**20), "rss_peak_mb": round(peak_rss / 2**20),
        "rss_limit_mb": round(limit / 2**20), "engine_weights_mb": round(weights_mb), "budget_gb": budget_gb,
        "failed": [dataclasses.asdict(o) for o in failures[:20]],
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "users.json").write_text(json.dumps(summary, indent=2))
    print("\nload:", json.dumps(summary, indent=2))

    assert failures == [], f"{len(failures)} of {len(outcomes)} requests failed: {summary['failed']}"
    assert len(outcomes) >= USERS * 2, f"only {len(outcomes)} requests in {DURATION_S:.0f} s"
    assert {o.api for o in outcomes} >= {"/answer", "/translate", "/generate", "/classify", "/transcribe",
                                         "/next_token"}
    lens = [u.lens_tokens for u in users if u.lens_tokens]
    assert all(len(tokens) == 1 for tokens in lens), "a user's prompt was read at different lengths"
    assert len({next(iter(t)) for t in lens}) == len(lens), "two users' prompts were read at the same length"
    assert budget_gb == BUDGET_GB and weights_mb <= BUDGET_GB * 1024
    assert peak_rss <= limit, (f"peak RSS {peak_rss / 2**20:.0f} MB > start {start_rss / 2**20:.0f} MB + budget "
                               f"{BUDGET_GB} GB + margin {WORKING_MARGIN_GB} GB")


def test_a_full_queue_answers_busy_at_once(tmp_path, recordings):
    """With room for one waiting request, a burst gets answers or a clear "busy, try again", never a hang."""
    env = {"LLM_LAB_QUEUE_SIZE": "1"}
    audio = handle_file(str(recordings["fox"]))
    with running_app(tmp_path / "app", env=env) as app:
        clients = [Client(app.url, verbose=False) for _ in range(BURST)]
        clients[0].predict(audio=audio, api_name="/transcribe")  # load Whisper first: the burst is about the queue
        start = threading.Barrier(BURST)

        def one(client: Client) -> tuple[str, float]:
            start.wait()
            t0 = time.perf_counter()
            try:
                client.submit(audio=audio, api_name="/transcribe").result(timeout=REQUEST_TIMEOUT_S)
                return "ok", time.perf_counter() - t0
            except Exception as e:  # the busy answers, and anything else, which fails the test below
                return f"{type(e).__name__}: {e}", time.perf_counter() - t0

        with cf.ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(one, clients))
        after = clients[0].predict(audio=audio, api_name="/transcribe")[0]  # and the app still serves
        assert app.alive()

    busy = [(m, s) for m, s in results if m != "ok"]
    summary = {"burst": BURST, "ok": BURST - len(busy), "busy": len(busy),
               "busy_max_s": round(max((s for _, s in busy), default=0), 2),
               "ok_max_s": round(max((s for m, s in results if m == "ok"), default=0), 2),
               "messages": sorted({re.sub(r"\d+", "N", m) for m, _ in busy})}
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "busy.json").write_text(json.dumps(summary, indent=2))
    print("\nbusy:", json.dumps(summary, indent=2))
    assert busy, f"a burst of {BURST} against a queue of one got no busy answer"
    assert len(busy) < BURST, "nobody was served"
    for message, seconds in busy:
        assert re.search(r"(busy|[Qq]ueue is full).*[Tt]ry again", message), message
        assert seconds < BUSY_WITHIN_S, f"'busy' took {seconds:.1f} s to arrive: {message}"
    assert "fox" in after.lower()
