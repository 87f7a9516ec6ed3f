"""The shared model cache: lazy loading, each model exactly once, a memory budget with LRU eviction, unload.

A loaded model is a :class:`LoadedModel`: the task's served object (which runs batches of requests) behind its own
:class:`~engine.worker.Worker`. Many threads may ask for the same unloaded model at once: one loads it, the others
wait for that load and share its result (after a failed load, the next one tries again).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from typing import Any, Callable, Hashable, Protocol

import torch

from .device import release_cpu_threads
from .registry import ModelSpec
from .weights import tensor_key
from .worker import Request, Worker

log = logging.getLogger(__name__)


class Served(Protocol):
    """What a task's ``load`` returns: a model ready to serve batches of requests."""

    nbytes: int  # memory held by the weights, for the budget
    # optional: ``joins = True`` when ``run_batch(requests, more)`` lets requests join a running batch (see Worker)

    def run_batch(self, requests: list[Request]) -> None: ...

    def batch_key(self, payload: Any) -> Hashable: ...


def module_nbytes(*modules: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (shared tensors counted once)."""
    seen, total = set(), 0
    for module in modules:
        tensors = list(module.parameters()) + list(module.buffers())
        for t in tensors:
            # sparse buffers (whisper's alignment heads) are tiny and have no data_ptr; oneDNN's packed weights
            # (engine.weights.PackedLinear) have none either, and count once each
            if t.layout not in (torch.strided, torch._mkldnn):
                continue
            key = tensor_key(t)
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


@dataclasses.dataclass
class LoadedModel:
    spec: ModelSpec
    served: Served
    worker: Worker
    load_seconds: float
    last_used: float

    @property
    def nbytes(self) -> int:
        return self.served.nbytes


@dataclasses.dataclass(frozen=True)
class LoadedInfo:
    """A loaded model as the Engine tab shows it."""

    name: str
    task: str
    family: str
    nbytes: int
    load_seconds: float
    idle_seconds: float
    pending: int
    served: int


class ModelCache:
    """Loads models on first use through ``load`` and keeps them within ``budget_bytes``."""

    def __init__(self, load: Callable[[ModelSpec], Served], budget_bytes: int, *, max_batch: int = 16,
                 queue_size: int = 64) -> None:
        self._load = load
        self.budget_bytes = budget_bytes
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._models: dict[str, LoadedModel] = {}
        self._loading: dict[str, threading.Lock] = {}  # one lock per model name while it loads
        self._lock = threading.Lock()  # guards the two dicts above, never held during a load
        self.loads = 0  # how many loads ran (tests check that concurrent asks load once)

    def get(self, spec: ModelSpec) -> LoadedModel:
        """The loaded model for ``spec``, loading it on first use."""
        with self._lock:
            loaded = self._models.get(spec.name)
            if loaded is not None and loaded.spec == spec:
                loaded.last_used = time.monotonic()
                return loaded
            name_lock = self._loading.setdefault(spec.name, threading.Lock())
        with name_lock:  # the first caller loads; the others wait here, then find it loaded
            with self._lock:
                loaded = self._models.get(spec.name)
                if loaded is not None and loaded.spec == spec:
                    loaded.last_used = time.monotonic()
                    return loaded
            if loaded is not None:  # the registry entry changed: serve the new spec
                self.unload(spec.name)
            t0 = time.perf_counter()
            try:
                served = self._load(spec)
            finally:
                release_cpu_threads()  # the caller's thread may idle now; the model runs in its worker's thread
            seconds = time.perf_counter() - t0
            self.loads += 1
            worker = Worker(spec.name, served.run_batch, batch_key=served.batch_key, max_batch=self._max_batch,
                            queue_size=self._queue_size, joins=getattr(served, "joins", False),
                            on_idle=release_cpu_threads)
            loaded = LoadedModel(spec, served, worker, seconds, time.monotonic())
            with self._lock:
                self._models[spec.name] = loaded
            log.info("loaded %s in %.2f s (%.0f MB)", spec.name, seconds, served.nbytes / 2**20)
            self._evict(keep=spec.name)
            return loaded

    def _evict(self, keep: str) -> None:
        """Unload least-recently-used models until the loaded ones fit the budget (``keep`` always stays)."""
        while True:
            with self._lock:
                total = sum(m.nbytes for m in self._models.values())
                if total <= self.budget_bytes:
                    return
                victims = sorted((m for m in self._models.values() if m.spec.name != keep), key=lambda m: m.last_used)
                if not victims:
                    log.warning("%s alone (%.0f MB) exceeds the memory budget (%.0f MB)", keep, total / 2**20,
                                self.budget_bytes / 2**20)
                    return
            log.info("memory budget: evicting %s (least recently used)", victims[0].spec.name)
            self.unload(victims[0].spec.name)

    def unload(self, name: str, wait_s: float | None = None) -> bool:
        """Unload a model: queued requests still finish, then its memory is released. False if it wasn't loaded.
        ``wait_s``: also wait up to that long for its worker's thread to end (what :meth:`Engine.close` does)."""
        with self._lock:
            loaded = self._models.pop(name, None)
        if loaded is None:
            return False
        loaded.worker.close(wait_s)
        del loaded
        gc.collect()
        return True

    def unload_all(self, wait_s: float | None = None) -> None:
        for name in list(self._models):
            self.unload(name, wait_s)

    def is_loaded(self, name: str) -> bool:
        return name in self._models

    def info(self) -> list[LoadedInfo]:
        now = time.monotonic()
        with self._lock:
            models = list(self._models.values())
        return [LoadedInfo(m.spec.name, m.spec.task, m.spec.family, m.nbytes, m.load_seconds, now - m.last_used,
                           m.worker.pending, m.worker.served) for m in models]

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(m.nbytes for m in self._models.values())
