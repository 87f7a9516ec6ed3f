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


BatchFn = Callable[..., None]  # run_batch(requests) or, for a task that lets requests join, run_batch(requests, more)
More = Callable[[int], list[Request]]  # more(room): up to ``room`` requests waiting now that may join the batch


class Worker:
    """Serves one model: a thread, a bounded queue, and batches of requests that arrived together.

    ``run_batch`` must finish (or fail) every request it is given. ``batch_key`` says which payloads may share a
    batch (e.g. the same decoding options); requests with another key wait for the next batch, in arrival order.
    ``on_idle`` runs in the worker's thread whenever it is about to wait for work (the engine releases the thread's
    CPU threads there: see :func:`engine.device.release_cpu_threads`). With ``joins=True`` the task is called as
    ``run_batch(requests, more)``: a batch that runs for many steps (token by token decoding) calls ``more(room)``
    between steps to take the requests that arrived meanwhile into the running batch (continuous batching), and must
    finish those too. They leave the queue as they join, so the queue only ever counts requests that nobody serves
    yet.
    """

    def __init__(self, name: str, run_batch: BatchFn, *, max_batch: int = 16, queue_size: int = 64,
                 batch_key: Callable[[Any], Hashable] | None = None, gather_s: float = 0.005,
                 joins: bool = False, on_idle: Callable[[], None] | None = None) -> None:
        self.name = name
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._batch_key = batch_key or (lambda payload: None)
        self._gather_s = gather_s
        self._queue: "queue.Queue[Request | None]" = queue.Queue(maxsize=queue_size)
        self._held: list[Request] = []  # taken from the queue, waiting for a batch with their key
        self._joins = joins
        self._on_idle = on_idle  # called in the worker's thread each time it is about to wait for work
        self._key: Hashable = None  # the running batch's key
        self._stopping = False  # the worker thread saw the close marker: stop after this batch
        self._batch: list[Request] = []  # the running batch, with the requests that joined it
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

    def close(self, wait_s: float | None = None) -> None:
        """Finish what is queued, then stop the thread; ``wait_s``: wait up to that long for the thread to end."""
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            threading.Thread(target=self._queue.put, args=(None,), daemon=True).start()
        if wait_s is not None:
            self.join(wait_s)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _next_batch(self) -> list[Request] | None:
        if self._held:  # requests held back by an earlier batch go first, in arrival order
            first = self._held.pop(0)
        elif self._stopping:
            return None
        else:
            if self._on_idle is not None and self._queue.empty():
                self._on_idle()
            first = self._queue.get()
            if first is None:
                return None
        self._key = self._batch_key(first.payload)
        return [first, *self._take(self._max_batch - 1, wait_s=self._gather_s)]

    def _take(self, room: int, wait_s: float = 0.0) -> list[Request]:
        """Up to ``room`` waiting requests with the running batch's key: those held back by an earlier batch first,
        in arrival order, then the queue's, waiting at most ``wait_s`` for more to arrive. The worker's thread only."""
        taken: list[Request] = []
        for request in list(self._held):
            if len(taken) < room and self._batch_key(request.payload) == self._key:
                self._held.remove(request)
                taken.append(request)
        deadline = time.monotonic() + wait_s
        while len(taken) < room and not self._stopping:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                self._stopping = True  # stop after this batch
                break
            (taken if self._batch_key(request.payload) == self._key else self._held).append(request)
        return taken

    @staticmethod
    def _live(requests: list[Request]) -> list[Request]:
        """The requests still wanted; the cancelled ones are answered here, before any compute."""
        live = []
        for request in requests:
            if request.cancelled:
                request.fail(CancelledError("Cancelled before it started."))
            else:
                live.append(request)
        return live

    def _more(self, room: int) -> list[Request]:
        """What a running batch calls between steps: requests that arrived meanwhile."""
        live = self._live(self._take(room))
        self._batch.extend(live)
        return live

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                for request in self._held:
                    request.fail(CancelledError("The model was unloaded before this request ran; try again."))
                return
            live = self._live(batch)
            if not live:
                continue
            self._batch = live
            self.busy = True
            try:
                if self._joins:
                    self._run_batch(live, self._more)
                else:
                    self._run_batch(live)
            except BaseException as e:  # the task failed as a whole: every request in the batch gets the error
                if not isinstance(e, Exception):
                    raise
                log.debug("batch on %s failed", self.name, exc_info=True)
                for request in self._batch:
                    request.fail(e)
            finally:
                self.busy = False
                self.served += len(self._batch)
            for request in self._batch:
                if not request.future.done():  # a task that forgot one is a bug; never leave a caller hanging
                    request.fail(RuntimeError(f"{self.name}: the task returned without a result"))
