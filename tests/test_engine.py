"""The engine's shared machinery: registry, device policy, settings, the model cache, the worker, offline errors,
and the import boundary. Fakes stand in for models here (the logic is what is tested); the task tests use real
architectures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine import (BusyError, CancelledError, Engine, InvalidOptionsError, ModelSpec, ModelUnavailableError,
                    Registry, Settings, UnknownModelError, choose_device)
from engine import device as device_module
from engine.cache import ModelCache, module_nbytes
from engine.device import release_cpu_threads
from engine.registry import BUILTIN_MODELS, TASKS
from engine.sources import resolve_files
from engine.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


# --- registry --------------------------------------------------------------------------------------------------
def test_every_task_has_a_default_model():
    registry = Registry()
    for task in TASKS:
        assert registry.default(task).task == task


def test_unknown_model_lists_what_exists():
    with pytest.raises(UnknownModelError) as e:
        Registry().get("gpt-5", task="text-generation")
    message = str(e.value)
    assert "gpt-5" in message and "SmolLM2-135M-Instruct" in message and "gpt2" in message
    assert "opus-mt-en-de" not in message  # only the task's own models


def test_unknown_task_lists_tasks():
    with pytest.raises(UnknownModelError, match="question-answering"):
        Registry().for_task("summarisation")


def test_task_aliases():
    assert Registry().default("qa").task == "question-answering"


def test_overrides_from_json_and_toml(tmp_path):
    entry = {"name": "my-marian", "task": "translation", "family": "marian", "source": "path:/models/marian",
             "languages": ["en", "it"], "default": True}
    json_file = tmp_path / "models.json"
    json_file.write_text(json.dumps({"models": [entry]}))
    toml_file = tmp_path / "models.toml"
    toml_file.write_text('[[models]]\nname = "gpt2"\ntask = "text-generation"\nfamily = "causal-lm"\n'
                         'source = "path:/models/gpt2"\n')
    for source in (str(json_file), json.dumps({"models": [entry]})):
        registry = Registry.with_overrides(source)
        assert registry.default("translation").name == "my-marian"
        assert registry.get("my-marian").languages == ("en", "it")
        assert sum(s.default for s in registry.for_task("translation")) == 1
    registry = Registry.with_overrides(str(toml_file))
    assert registry.get("gpt2").source == "path:/models/gpt2"  # an existing name is replaced
    assert len(registry.names()) == len(BUILTIN_MODELS)


def test_bad_model_entries_say_what_is_wrong(tmp_path):
    with pytest.raises(InvalidOptionsError, match="unknown fields"):
        Registry.with_overrides(json.dumps({"models": [{"name": "x", "task": "sentiment", "family": "f",
                                                       "source": "path:/x", "colour": "red"}]}))
    with pytest.raises(InvalidOptionsError, match="kind:where"):
        ModelSpec("x", "sentiment", "sequence-classification", "/no/kind")
    with pytest.raises(InvalidOptionsError, match="unknown task"):
        ModelSpec("x", "poetry", "causal-lm", "path:/x")
    with pytest.raises(InvalidOptionsError, match="Could not read"):
        Registry.with_overrides(str(tmp_path / "missing.json"))


# --- settings and device --------------------------------------------------------------------------------------
def test_settings_from_environment():
    s = Settings.from_env({"HF_HUB_OFFLINE": "1", "LLM_LAB_MEMORY_BUDGET_GB": "2", "LLM_LAB_MAX_BATCH": "4",
                           "HF_HOME": "/tmp/hf"}, max_batch=8)
    assert s.offline and s.memory_budget_bytes == 2 * 2**30 and s.max_batch == 8
    with pytest.raises(InvalidOptionsError, match="LLM_LAB_MAX_BATCH"):
        Settings.from_env({"LLM_LAB_MAX_BATCH": "many"})
    with pytest.raises(InvalidOptionsError, match="at least 1"):
        Settings(max_batch=0)


def test_device_auto_on_this_machine_is_explained():
    policy = choose_device("auto", "auto")
    if torch.cuda.is_available():
        assert policy.device == "cuda" and policy.dtype in (torch.bfloat16, torch.float16)
    else:
        assert policy.device in ("cpu", "mps")
    assert policy.reason and policy.dtype_name in policy.describe()


def test_device_overrides_and_refusals():
    policy = choose_device("cpu", "bfloat16")
    assert policy.device == "cpu" and policy.dtype == torch.bfloat16 and "configuration" in policy.reason
    with pytest.raises(InvalidOptionsError, match="choose one of"):
        choose_device("tpu")
    with pytest.raises(InvalidOptionsError, match="choose one of"):
        choose_device("cpu", "int3")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidOptionsError, match="no CUDA GPU"):
            choose_device("cuda")


def test_cpu_policy_gives_numpys_blas_one_thread_and_leaves_torchs(monkeypatch):
    """numpy's OpenBLAS threads spin after each call and took the cores from the worker encoding the next search
    query (engine.device.limit_numpy_blas_threads): the CPU policy gives numpy's BLAS one thread, unless the user
    chose its threads, and never touches torch's."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401

    def numpys(controller):
        return [lib for lib in controller.select(user_api="blas").lib_controllers
                if "torch" not in str(lib.filepath)]

    if not numpys(threadpoolctl.ThreadpoolController()):
        pytest.skip("numpy has no BLAS library that threadpoolctl can see")
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    torch_threads = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as numpy starts on this 2-core machine
        choose_device("cpu", "auto")
        assert {lib.num_threads for lib in numpys(threadpoolctl.ThreadpoolController())} == {1}
        assert torch.get_num_threads() == torch_threads
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's choice stands
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        choose_device("cpu", "auto")
        assert {lib.num_threads for lib in numpys(threadpoolctl.ThreadpoolController())} == {2}


# --- the model cache -------------------------------------------------------------------------------------------
class FakeServed:
    """Stands in for a loaded model: echoes payloads, records batch sizes."""

    def __init__(self, nbytes: int = 100, step_s: float = 0.0) -> None:
        self.nbytes, self.step_s, self.batches = nbytes, step_s, []

    def batch_key(self, payload):
        return payload.get("key") if isinstance(payload, dict) else None

    def run_batch(self, requests):
        self.batches.append(len(requests))
        for _ in range(20 if self.step_s else 1):
            if all(r.cancelled for r in requests):
                break
            time.sleep(self.step_s)
        for r in requests:
            if r.cancelled:
                r.fail(CancelledError("stopped"))
            else:
                r.finish(r.payload)


def spec(name: str) -> ModelSpec:
    return ModelSpec(name, "sentiment", "fake", f"path:/fake/{name}")


def test_eight_threads_asking_for_one_unloaded_model_load_it_once():
    started = threading.Barrier(8)

    def slow_load(s):
        time.sleep(0.3)
        return FakeServed()

    cache = ModelCache(slow_load, budget_bytes=10_000)
    got = []

    def ask():
        started.wait()
        got.append(cache.get(spec("a")))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and len(got) == 8 and all(g is got[0] for g in got)


def test_close_waits_until_the_worker_threads_have_ended(tmp_path):
    """A worker thread that freed its model's tensors while Python shut down aborted the process ("terminate called
    without an active exception", seen at the end of engine.training.bundled_qa): Engine.close() and
    unload_all(wait_s) return only when the threads have ended, after what was queued has finished."""
    def alive(name):
        return any(t.name == f"worker:{name}" and t.is_alive() for t in threading.enumerate())

    cache = ModelCache(lambda s: FakeServed(step_s=0.02), budget_bytes=10_000)
    request = cache.get(spec("slow")).worker.submit({"x": 1})
    assert alive("slow")
    cache.unload_all(wait_s=10)
    assert not alive("slow") and request.result(0) == {"x": 1}

    engine = Engine(Settings(cache_dir=tmp_path, offline=True))
    steps = []

    def job(cancelled):
        while not cancelled():
            steps.append(1)
            time.sleep(0.01)
            yield len(steps)

    engine.start_training("a job that runs until it is stopped", job)
    while not steps:
        time.sleep(0.01)
    assert alive("training")
    engine.close(wait_s=10)
    assert not alive("training")


def test_lru_eviction_under_a_budget():
    cache = ModelCache(lambda s: FakeServed(nbytes=400), budget_bytes=1000)
    cache.get(spec("a")), cache.get(spec("b"))
    cache.get(spec("a"))  # a is now more recently used than b
    cache.get(spec("c"))  # 1200 bytes > 1000: evict the least recently used, b
    assert [m.name for m in cache.info()] == ["a", "c"]
    assert cache.total_bytes <= cache.budget_bytes
    assert cache.unload("a") and not cache.unload("a") and not cache.is_loaded("a")
    cache.get(spec("a"))
    assert cache.loads == 4


def test_a_failed_load_is_retried_on_next_use():
    calls = []

    def flaky(s):
        calls.append(s.name)
        if len(calls) == 1:
            raise ModelUnavailableError("not yet")
        return FakeServed()

    cache = ModelCache(flaky, budget_bytes=10_000)
    with pytest.raises(ModelUnavailableError):
        cache.get(spec("a"))
    assert cache.get(spec("a")).served.nbytes == 100


def test_module_nbytes_counts_shared_weights_once():
    lin = torch.nn.Linear(10, 10)
    tied = torch.nn.Sequential(lin, lin)
    assert module_nbytes(tied) == (100 + 10) * 4


# --- the worker ------------------------------------------------------------------------------------------------
def test_requests_that_arrive_together_share_a_batch():
    served = FakeServed(step_s=0.01)
    worker = Worker("fake", served.run_batch, batch_key=served.batch_key, max_batch=8)
    first = worker.submit({"i": 0})  # occupies the worker...
    time.sleep(0.02)
    rest = [worker.submit({"i": i}) for i in range(1, 6)]  # ...while these queue up together
    assert [r.result(5)["i"] for r in [first, *rest]] == list(range(6))
    assert served.batches == [1, 5]


def test_batches_respect_the_batch_key_and_arrival_order():
    served = FakeServed(step_s=0.01)
    worker = Worker("fake", served.run_batch, batch_key=served.batch_key, max_batch=8)
    worker.submit({"key": "x"})
    time.sleep(0.02)
    reqs = [worker.submit({"key": k, "i": i}) for i, k in enumerate("xyxy")]
    assert [r.result(5)["i"] for r in reqs] == [0, 1, 2, 3]
    assert served.batches == [1, 2, 2]


def test_a_full_queue_answers_busy_at_once():
    served = FakeServed(step_s=0.02)
    worker = Worker("fake", served.run_batch, max_batch=1, queue_size=2)
    worker.submit({})
    time.sleep(0.01)
    worker.submit({}), worker.submit({})
    t0 = time.perf_counter()
    with pytest.raises(BusyError, match="Try again"):
        worker.submit({})
    assert time.perf_counter() - t0 < 0.1


def test_cancel_stops_a_running_request_and_frees_the_worker():
    served = FakeServed(step_s=0.05)  # 20 steps of 50 ms: one second if not stopped
    worker = Worker("fake", served.run_batch, max_batch=1)
    running = worker.submit({"i": 1})
    time.sleep(0.05)
    t0 = time.perf_counter()
    running.cancel()
    with pytest.raises(CancelledError):
        running.result(5)
    assert time.perf_counter() - t0 < 0.3  # one step, not the remaining second
    nxt = worker.submit({"i": 2})
    time.sleep(0.1)
    assert served.batches == [1, 1]  # the next request is already running
    nxt.cancel()


def test_a_cancelled_queued_request_never_runs():
    served = FakeServed(step_s=0.02)
    worker = Worker("fake", served.run_batch, max_batch=1)
    worker.submit({})
    queued = worker.submit({})
    queued.cancel()
    with pytest.raises(CancelledError):
        queued.result(5)
    time.sleep(0.5)
    assert served.batches == [1]


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on():
    def run_batch(requests):
        if requests[0].payload == "boom":
            raise ValueError("bad batch")
        for r in requests:
            r.finish("ok")

    worker = Worker("fake", run_batch)
    with pytest.raises(ValueError):
        worker.submit("boom").result(5)
    assert worker.submit("fine").result(5) == "ok"


class JoiningTask:
    """A task that decodes step by step until released, taking the requests that arrive meanwhile into its batch."""

    def __init__(self, fail: bool = False) -> None:
        self.release, self.fail, self.batches = threading.Event(), fail, []

    def run_batch(self, requests, more):
        rows = list(requests)
        self.batches.append(rows)
        while not self.release.wait(0.002):
            rows += more(16)
        rows += more(16)
        if self.fail:
            raise ValueError("the forward pass failed")
        for r in rows:
            r.finish(r.payload)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_requests_that_join_a_running_batch_leave_the_queue():
    task = JoiningTask()
    worker = Worker("fake", task.run_batch, joins=True, queue_size=2)
    requests = [worker.submit(0)]
    wait_until(lambda: task.batches)
    for i in range(1, 11):  # a queue of two: had they stayed queued after joining, the third would be "busy"
        requests.append(worker.submit(i))
        wait_until(lambda: worker.pending == 0)
    task.release.set()
    assert [r.result(5) for r in requests] == list(range(11))
    assert len(task.batches) == 1 and worker.served == 11


def test_a_failing_batch_fails_the_requests_that_joined_it_too():
    task = JoiningTask(fail=True)
    worker = Worker("fake", task.run_batch, joins=True)
    first = worker.submit("first")
    wait_until(lambda: task.batches)
    joined = worker.submit("joined")
    wait_until(lambda: worker.pending == 0)
    task.release.set()
    for request in (first, joined):
        with pytest.raises(ValueError, match="forward pass"):
            request.result(5)


def test_the_worker_calls_on_idle_in_its_own_thread_each_time_it_waits_for_work():
    seen = []
    worker = Worker("fake", lambda rs: [r.finish(r.payload) for r in rs],
                    on_idle=lambda: seen.append(threading.current_thread().name))
    wait_until(lambda: len(seen) == 1)  # idle from the start
    assert worker.submit(7).result(5) == 7
    wait_until(lambda: len(seen) == 2)  # idle again once the queue is empty
    assert set(seen) == {"worker:fake"}


def test_a_thread_that_goes_idle_lets_its_cpu_threads_go():
    if device_module._libgomp() is None or torch.get_num_threads() < 2:
        pytest.skip("torch here does not run on GNU OpenMP with several threads")

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    counts = {}

    def work():
        torch.ones(1 << 22).sum()  # a parallel region: this thread gets its own OpenMP team
        counts["busy"] = threads()
        release_cpu_threads()
        deadline = time.monotonic() + 5
        while threads() > counts["busy"] - (torch.get_num_threads() - 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        counts["idle"] = threads()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert counts["idle"] == counts["busy"] - (torch.get_num_threads() - 1)


def test_streamed_events_and_early_close_cancels():
    def run_batch(requests):
        (r,) = requests
        for i in range(100):
            if r.cancelled:
                r.fail(CancelledError("stopped"))
                return
            r.emit(i)
            time.sleep(0.005)
        r.finish("done")

    worker = Worker("fake", run_batch)
    request = worker.submit(None)
    events = request.events()
    assert [next(events) for _ in range(3)] == [0, 1, 2]
    events.close()
    assert request.cancelled
    with pytest.raises(CancelledError):
        request.result(5)


# --- offline, and the real engine ------------------------------------------------------------------------------
def test_offline_hub_model_fails_fast_naming_it_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as e:
        resolve_files(Registry().get("opus-mt-en-de"), Settings(offline=True))
    assert time.perf_counter() - t0 < 5
    message = str(e.value)
    assert "opus-mt-en-de" in message and "hf download Helsinki-NLP/opus-mt-en-de" in message
    assert "HF_HUB_OFFLINE" in message and "path:" in message


def test_missing_local_folder_says_so(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_files(ModelSpec("mine", "sentiment", "sequence-classification", f"path:{tmp_path}/nope"), Settings())


def test_engine_serves_a_real_packaged_model_and_unloads_it(tmp_path):
    engine = Engine(Settings(cache_dir=tmp_path, offline=True))
    result = engine.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."])
    sim = result.similarity()
    assert sim[0, 1] > sim[0, 2] + 0.2  # the two cat sentences are closer than cat and markets
    assert [m.name for m in engine.status().loaded] == ["all-MiniLM-L6-v2"]
    assert engine.status().loaded[0].nbytes > 10 * 2**20
    assert engine.unload("all-MiniLM-L6-v2") and engine.status().loaded == ()


def test_importing_the_engine_pulls_in_no_gradio():
    code = "import engine, engine.tasks.common, sys; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for path in (ROOT / "engine").rglob("*.py"):
        assert "import gradio" not in path.read_text(), f"{path} imports gradio"
