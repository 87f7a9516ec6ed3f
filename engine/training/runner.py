"""One training at a time, in the engine's training worker.

A trainer is a function ``job(should_stop) -> Iterator[event]``: it checks ``should_stop()`` between steps and, when
asked to stop, saves what it has and returns. :class:`TrainingWorker` runs it in a :class:`~engine.worker.Worker`
thread (the same machinery that serves models: its CPU threads are released when it idles) and hands the caller a
:class:`TrainingRun`, an iterator of the events as they come. ``run.stop()`` asks the trainer to stop and keeps
iterating up to its final event; closing the iterator (or dropping it) stops the run too. While a run is going, a
second start raises :class:`~engine.errors.BusyError`, which names the run that holds the worker.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Iterator

from ..device import release_cpu_threads
from ..errors import BusyError, CancelledError, EngineError
from ..worker import Request, Worker

log = logging.getLogger(__name__)

Job = Callable[[Callable[[], bool]], Iterator[Any]]


@dataclasses.dataclass(frozen=True)
class _Payload:
    description: str  # "pretraining 'my-gpt'", as a busy message names it
    job: Job


class TrainingRun:
    """The events of one training run as they are produced: ``for event in run: ...``.

    ``id`` is the engine's request id (``engine.cancel(id)`` stops it from anywhere, like :meth:`stop`); ``last`` is
    the newest event seen. Closing the iterator early (``close()``, ``break`` in a ``with`` block, garbage collection)
    stops the run; the trainer still saves its last checkpoint.
    """

    def __init__(self, request: Request, description: str) -> None:
        self.request, self.id, self.description = request, request.id, description
        self.last: Any = None
        self._events = request.events()

    def __iter__(self) -> "TrainingRun":
        return self

    def __next__(self) -> Any:
        self.last = next(self._events)
        return self.last

    def stop(self) -> None:
        """Ask the trainer to stop at its next step; keep iterating to receive its final event."""
        self.request.cancel()

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> "TrainingRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TrainingWorker:
    """The engine's one training slot: a worker thread that runs one trainer at a time."""

    def __init__(self) -> None:
        self._worker = Worker("training", self._run_batch, max_batch=1, queue_size=1, on_idle=release_cpu_threads)
        self._lock = threading.Lock()
        self._current: tuple[Request, str, float] | None = None

    @property
    def running(self) -> str | None:
        """What is training now ("pretraining 'my-gpt'"), or None."""
        current = self._current
        return current[1] if current and not current[0].future.done() else None

    def start(self, description: str, job: Job) -> TrainingRun:
        """Start ``job`` unless another run is going (then :class:`BusyError`, at once)."""
        with self._lock:
            if self._current is not None and not self._current[0].future.done():
                _, what, started = self._current
                raise BusyError(f"Another training run is going: {what}, started {time.monotonic() - started:.0f} s "
                                "ago. One training runs at a time: wait for it to finish, or stop it first.")
            request = self._worker.submit(_Payload(description, job))
            self._current = (request, description, time.monotonic())
        return TrainingRun(request, description)

    def close(self, wait_s: float | None = None) -> None:
        """Stop the running trainer (cancelled at its next step) and the slot's thread; ``wait_s``: wait up to that
        long for the thread to end."""
        current = self._current
        if current is not None:
            current[0].cancel()
        self._worker.close(wait_s)

    @staticmethod
    def _run_batch(requests: list[Request]) -> None:
        for request in requests:
            payload: _Payload = request.payload
            last = None
            try:
                for last in payload.job(lambda: request.cancelled):
                    request.emit(last)
            except EngineError as e:
                request.fail(e)
                continue
            except Exception as e:  # a bug in a trainer: logged in full, the user sees a short message
                log.exception("%s failed", payload.description)
                request.fail(e)
                continue
            if last is None and request.cancelled:
                request.fail(CancelledError(f"{payload.description} was stopped before its first step."))
            else:
                request.finish(last)
