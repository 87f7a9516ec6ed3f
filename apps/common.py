"""What every tab shares: the one place where engine errors become messages on the page, and the queue settings
for model work."""
from __future__ import annotations

import atexit
import functools
import inspect
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import Engine, EngineError

log = logging.getLogger(__name__)

ACCELERATOR = "accelerator"  # the concurrency group of every event that runs a model
UNEXPECTED = "Something went wrong on our side; it has been logged. Try again, or pick another model."


def _as_gr_error(error: BaseException) -> gr.Error:
    if isinstance(error, EngineError):
        return gr.Error(str(error), print_exception=False)
    log.error("unexpected error in a UI event", exc_info=error)
    return gr.Error(UNEXPECTED, print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Turn the engine's typed errors into ``gr.Error`` messages (and log anything unexpected, with its traceback,
    showing the user a short message instead). Works for plain functions and for generators (streaming)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise _as_gr_error(e) from e

        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise _as_gr_error(e) from e

    return call


def model_work(engine: Engine) -> dict[str, Any]:
    """Event keyword arguments for anything that runs a model: one shared concurrency limit for all tabs."""
    return {"concurrency_id": ACCELERATOR, "concurrency_limit": engine.settings.concurrency}


def model_choices(engine: Engine, task: str) -> tuple[list[str], str]:
    """The registry's models for ``task`` and its default, for a dropdown."""
    specs = engine.registry.for_task(task)
    return [s.name for s in specs], engine.registry.default(task).name


def model_label(engine: Engine, task: str, name: str | None) -> str:
    """One line that says honestly what model answered and what it is."""
    spec = engine.spec(task, name)
    return f"**{spec.name}** — {spec.description} ({spec.size}; licence {spec.license})"


class Downloads:
    """Files offered for download, in one folder per app process that is removed when the app exits. Gradio serves a
    copy from its own cache, so only the newest ``keep`` downloads are kept here; older ones are removed as new ones
    come."""

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="llm-lab-downloads-"))
        self._lock = threading.Lock()
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def folder(self) -> Path:
        """A new, empty folder for one download (a file keeps its user-facing name inside it)."""
        with self._lock:
            old = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
            for stale in old[:max(0, len(old) - self.keep + 1)]:
                shutil.rmtree(stale, ignore_errors=True)
            return Path(tempfile.mkdtemp(dir=self.root))

    def write_text(self, name: str, text: str) -> str:
        """Write ``text`` (UTF-8) as a file called ``name``; returns its path for a ``gr.File``."""
        path = self.folder() / name
        path.write_text(text, encoding="utf-8", newline="")
        return str(path)


#: the one downloads folder of this process, shared by every tab
DOWNLOADS = Downloads()
