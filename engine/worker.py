"""Requests and the worker that serves one loaded model.

Each loaded model has one :class:`Worker`: a thread that takes :class:`Request` objects from a bounded queue and
hands the ones that arrived together to the task's ``run_batch`` in one call, so a task can run them in one forward
pass. A full queue answers :class:`BusyError` at once instead of letting callers hang. A request can be cancelled at
any time: a queued one is dropped, a running one is seen by ``run_batch`` between steps (``request.cancelled``), which
stops its compute.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

from .errors import BusyError, CancelledError

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
_ids = itertools.count(1)
_DONE = object()  # end-of-stream marker


@dataclass(eq=False)
class Request:
    """One unit of work for a model. ``payload`` is task-specific; the result arrives through ``future``."""

    payload: Any
    progress: Progress | None = None
    id: int = field(default_factory=lambda: next(_ids))
    future: Future = field(default_factory=Future)
    created: float = field(default_factory=time.monotonic)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _stream: "queue.SimpleQueue[Any]" = field(default_factory=queue.SimpleQueue)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask for the request to stop; its compute stops at the task's next check (one decoding step at most)."""
        self._cancel.set()

    # The task's side.
    def emit(self, item: Any) -> None:
        """Stream a partial result (e.g. one token) to whoever iterates :meth:`events`."""
        self._stream.put(item)

    def report(self, fraction: float, message: str = "") -> None:
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), message)

    def finish(self, result: Any) -> None:
        if not self.future.done():
            self.future.set_result(result)
        self._stream.put(_DONE)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        self._stream.put(_DONE)

    # The caller's side.
    def result(self, timeout: float | None = None) -> Any:
        """Wait for the result; an interrupted wait (Ctrl-C in a notebook) cancels the request."""
        try:
            return self.future.result(timeout)
        except BaseException:
            self.cancel()
            raise

    def events(self) -> Iterator[Any]:
        """Partial results as they come, then the end; closing the iterator early cancels the request."""
        try:
            while True:
                item = self._stream.get()
                if item is _DONE:
                    break
                yield item
            self.future.result()  # re-raise the task's error, if any
        finally:
            if not self.future.done():
                self.cancel()


BatchFn = Callable[[list[Request]], None]


class Worker:
    """Serves one model: a thread, a bounded queue, and batches of requests that arrived together.

    ``run_batch`` must finish (or fail) every request it is given. ``batch_key`` says which payloads may share a
    batch (e.g. the same decoding options); requests with another key wait for the next batch, in arrival order.
    """

    def __init__(self, name: str, run_batch: BatchFn, *, max_batch: int = 16, queue_size: int = 64,
                 batch_key: Callable[[Any], Hashable] | None = None, gather_s: float = 0.005) -> None:
        self.name = name
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._batch_key = batch_key or (lambda payload: None)
        self._gather_s = gather_s
        self._queue: "queue.Queue[Request | None]" = queue.Queue(maxsize=queue_size)
        self._held: list[Request] = []  # taken from the queue, waiting for a batch with their key
        self._closed = False
        self.busy = False
        self.served = 0
        self._thread = threading.Thread(target=self._loop, name=f"worker:{name}", daemon=True)
        self._thread.start()

    def submit(self, payload: Any, progress: Progress | None = None) -> Request:
        if self._closed:
            raise BusyError(f"Model {self.name!r} is being unloaded; try again in a moment.")
        request = Request(payload, progress)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise BusyError(f"Model {self.name!r} is busy: {self._queue.qsize()} requests are waiting. "
                            "Try again in a moment.") from None
        return request

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._held)

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            threading.Thread(target=self._queue.put, args=(None,), daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _next_batch(self) -> list[Request] | None:
        first = self._held.pop(0) if self._held else self._queue.get()
        if first is None:
            return None
        key = self._batch_key(first.payload)
        batch, deadline = [first], time.monotonic() + self._gather_s
        # Requests already held back by an earlier batch come first, in arrival order.
        for request in list(self._held):
            if len(batch) < self._max_batch and self._batch_key(request.payload) == key:
                self._held.remove(request)
                batch.append(request)
        while len(batch) < self._max_batch:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                self._queue.put(None)  # stop after this batch
                break
            (batch if self._batch_key(request.payload) == key else self._held).append(request)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                for request in self._held:
                    request.fail(CancelledError("The model was unloaded before this request ran; try again."))
                return
            live = []
            for request in batch:
                if request.cancelled:
                    request.fail(CancelledError("Cancelled before it started."))
                else:
                    live.append(request)
            if not live:
                continue
            self.busy = True
            try:
                self._run_batch(live)
            except BaseException as e:  # the task failed as a whole: every request in the batch gets the error
                if not isinstance(e, Exception):
                    raise
                log.debug("batch on %s failed", self.name, exc_info=True)
                for request in live:
                    request.fail(e)
            finally:
                self.busy = False
                self.served += len(live)
            for request in live:
                if not request.future.done():  # a task that forgot one is a bug; never leave a caller hanging
                    request.fail(RuntimeError(f"{self.name}: the task returned without a result"))
