"""The engine: settings, the device policy, the registry and the model cache, with one method per task.

Each task lives in its own module under ``engine/tasks/`` with the same shape: a ``load(spec, files, engine)``
that returns a served model (prepare inputs, run the model on a batch, turn outputs into results; only the middle
step touches the device), and the public functions that the methods below expose. ``Engine`` only wires them up.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import threading
import weakref
from typing import Any, Callable

from safetensors import SafetensorError

from .cache import LoadedInfo, ModelCache, Served
from .config import Settings
from .device import DevicePolicy, choose_device, cpu_has_amx
from .errors import ModelLoadError, EngineError
from .registry import ModelSpec, Registry, canonical_task, custom_spec
from .sources import resolve_files
from .training.runner import Job, TrainingRun, TrainingWorker
from .training.store import Card, TrainedModels
from .worker import Progress, Request

log = logging.getLogger(__name__)

#: architecture family -> the task module that loads and serves it
FAMILY_MODULES: dict[str, str] = {
    "causal-lm": "engine.tasks.generation",
    "marian": "engine.tasks.translation",
    "m2m100": "engine.tasks.translation",
    "nllb": "engine.tasks.translation",
    "extractive-qa": "engine.tasks.qa",
    "sequence-classification": "engine.tasks.sentiment",
    "whisper": "engine.tasks.speech",
    "sentence-encoder": "engine.tasks.embedding",
    "attention": "engine.tasks.attention",  # eager-attention copies for attention maps
    "openai-compatible": "engine.tasks.remote",  # text generation by another server (an ``openai:`` source)
}


@dataclasses.dataclass(frozen=True)
class EngineStatus:
    """What the Engine tab shows."""

    device: str
    dtype: str
    reason: str
    threads: int
    amx: bool
    offline: bool
    budget_bytes: int
    loaded: tuple[LoadedInfo, ...]


def _task_api(module: str, function: str) -> Callable:
    """An Engine method that calls ``module.function(engine, ...)``, with that function's signature and docstring
    (``help(engine.generate)`` and an editor's completion show the real arguments and their defaults: the function's
    first parameter, the engine, plays the part of ``self``). Importing every task module costs about 0.2 s on top of
    torch, which ``import engine`` loads anyway; transformers, whisper and scikit-learn stay unimported until used."""
    fn = getattr(importlib.import_module(module), function)

    @functools.wraps(fn)
    def method(self: "Engine", *args: Any, **kwargs: Any) -> Any:
        return fn(self, *args, **kwargs)

    return method


class Engine:
    """One shared engine for every tab (and for notebooks): ``Engine().generate("Once upon a time")``."""

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry or Registry.with_overrides(self.settings.models_file)
        self.policy: DevicePolicy = choose_device(self.settings.device, self.settings.dtype, self.settings.threads,
                                                    self.settings.encoder_dtype)
        self.models = ModelCache(self._load, self.settings.memory_budget_bytes, max_batch=self.settings.max_batch,
                                 queue_size=self.settings.queue_size)
        self._requests: "weakref.WeakValueDictionary[int, Request]" = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        # Models made in this app (Pretrain, Fine-tune tabs): registered from their folders, so they survive restarts.
        self.trained = TrainedModels(self.settings.cache_dir / "trained", self.registry, self.models.unload)
        self.trained.scan()
        self._training: TrainingWorker | None = None

    # --- the shared machinery -------------------------------------------------------------------------------
    def spec(self, task: str, model: str | None = None) -> ModelSpec:
        """The registry entry for ``model`` (or the task's default); unknown names list what exists. When the operator
        allows custom models, an unregistered ``hub:OWNER/NAME`` or ``path:/folder`` is a model of the task's family."""
        task = canonical_task(task)
        if model and self.settings.allow_custom_models and model not in self.registry.names():
            custom = custom_spec(task, model)
            if custom is not None:
                return custom
        return self.registry.resolve(task, model)

    def _load(self, spec: ModelSpec) -> Served:
        module = importlib.import_module(FAMILY_MODULES[spec.family]) if spec.family in FAMILY_MODULES else None
        if module is None:
            raise ModelLoadError(f"Model {spec.name!r}: no runtime serves the family {spec.family!r}; known families: "
                                 f"{', '.join(FAMILY_MODULES)}.")
        files = None if spec.source_kind == "openai" else resolve_files(spec, self.settings)  # remote: no files
        try:
            return module.load(spec, files, self)
        except EngineError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, IndexError, SafetensorError) as e:  # corrupt files
            log.exception("loading %s from %s failed", spec.name, files)
            raise ModelLoadError(f"Model {spec.name!r} could not be loaded from {files}: {e}. The files may be "
                                 "incomplete or corrupt: download them again.") from e

    def served(self, task: str, model: str | None = None) -> Served:
        """The loaded model (loading it on first use), for code that needs the model object itself."""
        return self.models.get(self.spec(task, model)).served

    def submit(self, task: str, model: str | None, payload: Any, progress: Progress | None = None) -> Request:
        """Queue ``payload`` for the model's worker; returns the :class:`Request` (result, events, cancel)."""
        loaded = self.models.get(self.spec(task, model))
        request = loaded.worker.submit(payload, progress)
        self._requests[request.id] = request
        return request

    def run(self, task: str, model: str | None, payload: Any, progress: Progress | None = None) -> Any:
        """Submit and wait for the result."""
        return self.submit(task, model, payload, progress).result()

    def cancel(self, request_id: int) -> bool:
        """Cancel a request by id (the UI's Stop button); False when it is already gone."""
        request = self._requests.get(request_id)
        if request is None:
            return False
        request.cancel()
        return True

    def unload(self, model: str) -> bool:
        """Unload a model by name; it loads again on next use."""
        return self.models.unload(model)

    def close(self, wait_s: float = 30.0) -> None:
        """Stop training, unload every model, and wait (up to ``wait_s`` for each) until their worker threads have
        ended. A worker thread that still freed its model's tensors while Python shut down took the process down
        ("terminate called without an active exception": the thread re-took the interpreter lock mid-shutdown from
        inside torch's C++), so a script that calls close() before it exits ends cleanly."""
        if self._training is not None:
            self._training.close(wait_s)
        self.models.unload_all(wait_s)

    # --- training: one run at a time, its results registry models ---------------------------------------------
    @property
    def training(self) -> TrainingWorker:
        """The training slot (created on first use): ``engine.training.running`` says what is training now."""
        with self._lock:
            if self._training is None:
                self._training = TrainingWorker()
            return self._training

    def start_training(self, description: str, job: Job) -> TrainingRun:
        """Run a trainer in the training worker (see :mod:`engine.training.runner`); BusyError while another runs."""
        run = self.training.start(description, job)
        self._requests[run.id] = run.request
        return run

    def trained_models(self, task: str | None = None) -> list[Card]:
        """The models trained in this app (of ``task``, when given), newest first, with their cards."""
        return self.trained.cards(task)

    def delete_model(self, name: str) -> None:
        """Delete a model trained in this app: unloaded, unregistered, its folder removed."""
        self.trained.delete(name)

    def status(self) -> EngineStatus:
        p = self.policy
        reason = p.reason if p.encoder_dtype == p.dtype else \
            f"{p.reason}; sentiment, QA, embedding and whisper's audio encoders in {p.encoder_dtype_name}: " \
            f"{p.encoder_reason}"
        return EngineStatus(p.device, p.dtype_name, reason, p.threads, cpu_has_amx(), self.settings.offline,
                            self.settings.memory_budget_bytes, tuple(self.models.info()))

    # --- one method per task (each documented in its module) -------------------------------------------------
    generate = _task_api("engine.tasks.generation", "generate")
    stream = _task_api("engine.tasks.generation", "stream")
    next_token = _task_api("engine.tasks.generation", "next_token")
    translate = _task_api("engine.tasks.translation", "translate")
    answer = _task_api("engine.tasks.qa", "answer")
    answer_batch = _task_api("engine.tasks.qa", "answer_batch")
    classify = _task_api("engine.tasks.sentiment", "classify")
    classify_batch = _task_api("engine.tasks.sentiment", "classify_batch")
    explain = _task_api("engine.tasks.sentiment", "explain")
    transcribe = _task_api("engine.tasks.speech", "transcribe")
    embed = _task_api("engine.tasks.embedding", "embed")
    similarity = _task_api("engine.tasks.embedding", "similarity")
    search = _task_api("engine.tasks.embedding", "search")
    embedding_map = _task_api("engine.tasks.embedding_map", "embedding_map")
    neighbours = _task_api("engine.tasks.word_vectors", "neighbours")
    analogy = _task_api("engine.tasks.word_vectors", "analogy")
    word_vector = _task_api("engine.tasks.word_vectors", "word_vector")
    logits_as_inner_products = _task_api("engine.tasks.word_vectors", "logits_as_inner_products")
    attention = _task_api("engine.tasks.attention", "attention")
    finetune_classifier = _task_api("engine.training.finetune", "finetune_classifier")
    finetune_lm = _task_api("engine.training.finetune_lm", "finetune_lm")
    finetune_qa = _task_api("engine.training.finetune_qa", "finetune_qa")
    pretrain = _task_api("engine.training.pretrain", "pretrain")
    estimate_pretraining = _task_api("engine.training.pretrain", "estimate")
