"""No silent waits: when an event needs a model that is not in memory yet, the page says which model, its size, and
what is happening (converting the packaged weights once, downloading, loading into memory) with a progress bar,
instead of a bare spinner. And the app loads its default model before it serves (``LLM_LAB_PRELOAD``), so that the
first request answers as fast as the later ones.

    trigger(with_load_notice(engine, "text-generation")(run), inputs, outputs)   # the event's ``model`` argument
"""
from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from typing import Any, Callable

import gradio as gr

from engine import Engine, EngineError, ModelSpec
from engine.sources import availability, resolve_files

log = logging.getLogger(__name__)

PRELOAD_DEFAULT = "text-generation"  # LLM_LAB_PRELOAD: tasks whose default model loads at start ("none": nothing)


def load_steps(engine: Engine, task: str, model: str | None) -> list[str]:
    """What loading ``model`` will take, in words, one line per step; empty when it is in memory already, or when it
    cannot be loaded from here (an unknown name, a download while offline): the task itself then answers with its own
    message or its fallback."""
    try:
        spec = engine.spec(task, model)
    except EngineError:
        return []
    return spec_steps(engine, spec)


def spec_steps(engine: Engine, spec: ModelSpec) -> list[str]:
    """:func:`load_steps` for a model given by its registry entry."""
    if engine.models.is_loaded(spec.name):
        return []
    here = availability(spec, engine.settings)
    steps = []
    if here.state == "packaged, not converted":
        steps.append(f"Converting {spec.name} from its PyPI package (once; about a minute)")
    elif here.state == "download":
        if engine.settings.offline:
            return []
        steps.append(f"Downloading {spec.name} ({here.detail})")
    elif not here.ready:
        return []
    steps.append(f"Loading {spec.name} into memory ({spec.size or 'size unknown'})")
    return steps


def ensure_loaded(engine: Engine, task: str, model: str | None, progress: Any = None) -> None:
    """Load ``model`` (the task's default when empty) now, telling the page what happens: a notice naming the model
    and its size, and one progress step per phase (convert or download, then load). Nothing when it is loaded. A
    failure is left to the task's own call (which reports it, or falls back to another model)."""
    try:
        spec = engine.spec(task, model)
    except EngineError:
        return
    ensure_spec_loaded(engine, spec, progress)


def ensure_spec_loaded(engine: Engine, spec: ModelSpec, progress: Any = None) -> None:
    """:func:`ensure_loaded` for a model given by its registry entry (e.g. the attention maps' eager copy)."""
    steps = spec_steps(engine, spec)
    if not steps:
        return
    what = steps[0].split(" (")[0]
    gr.Info(f"First use of {spec.name} ({spec.size or 'size unknown'}): {what[0].lower()}{what[1:]}… "
            "It stays in memory for the next requests.", duration=8)
    started = time.perf_counter()
    try:
        for i, step in enumerate(steps):
            if progress is not None:
                progress(i / len(steps), desc=f"{step}…")
            if i < len(steps) - 1:
                resolve_files(spec, engine.settings)  # convert or download; loading below finds the files ready
        engine.models.get(spec)
    except EngineError as e:
        log.info("loading %s for the page failed (%s); the task reports it", spec.name, e)
        return
    if progress is not None:
        progress(1.0, desc=f"{spec.name} loaded in {time.perf_counter() - started:.1f} s")
    log.info("%s loaded for the page in %.1f s", spec.name, time.perf_counter() - started)


def with_load_notice(engine: Engine, task: str, model_param: str = "model") -> Callable[[Callable], Callable]:
    """Wrap an event function so that, before it runs, the model named by its ``model_param`` argument is loaded with
    a notice and a progress bar (see :func:`ensure_loaded`). Works for plain and generator (streaming) functions; the
    wrapper's signature is the function's plus a ``gr.Progress`` argument, so gradio sends progress to the page."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        def model_of(args: tuple, kwargs: dict) -> str | None:
            try:
                return signature.bind_partial(*args, **kwargs).arguments.get(model_param) or None
            except TypeError:
                return None

        count = len(signature.parameters)

        def split(args: tuple, kwargs: dict) -> tuple[tuple, dict, Any]:
            """gradio passes the tracker positionally, after the function's own arguments."""
            if len(args) > count:
                return args[:count] + args[count + 1:], kwargs, args[count]
            kwargs = dict(kwargs)
            return args, kwargs, kwargs.pop("progress", None)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args: Any, **kwargs: Any):
                args, kwargs, progress = split(args, kwargs)
                ensure_loaded(engine, task, model_of(args, kwargs), progress)
                yield from fn(*args, **kwargs)

            wrapper = stream
        else:
            @functools.wraps(fn)
            def call(*args: Any, **kwargs: Any):
                args, kwargs, progress = split(args, kwargs)
                ensure_loaded(engine, task, model_of(args, kwargs), progress)
                return fn(*args, **kwargs)

            wrapper = call
        extra = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
        wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
        del wrapper.__wrapped__  # gradio reads __signature__; nothing should follow the original past it
        return wrapper

    return decorate


def preload(engine: Engine, tasks: str = PRELOAD_DEFAULT, background: bool = False) -> threading.Thread | None:
    """Load the default model of each task in ``tasks`` (comma-separated; ``none`` for nothing), when its weights are
    on this machine (no download, no conversion at start). The app does this before it serves, so that the first
    request answers as fast as the later ones (a few seconds more at start); ``background=True`` loads in a thread
    instead and returns it (a request that arrives meanwhile waits for that same load, never for a second one)."""
    names = [t.strip() for t in tasks.split(",") if t.strip() and t.strip().lower() != "none"]
    if not names:
        return None

    def run() -> None:
        for task in names:
            try:
                spec = engine.spec(task)
                if not availability(spec, engine.settings).ready:
                    log.info("preload: %s is not ready on this machine; it loads on first use", spec.name)
                    continue
                log.info("preload: loading %s before the first request (LLM_LAB_PRELOAD=none skips this)",
                         spec.name)
                engine.models.get(spec)
            except EngineError as e:
                log.warning("preload of %s's default model failed: %s", task, e)

    thread = threading.Thread(target=run, name="preload", daemon=True)
    thread.start()
    if not background:
        thread.join()
    return thread
