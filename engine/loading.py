"""Building models while other threads serve: one lock, and torch's default dtype never changed.

The engine loads a model on its first request, in that request's thread, while other models serve theirs. Two things
in the libraries it loads with are process-wide:

- ``from_pretrained(dtype=...)`` builds the model under ``torch.set_default_dtype(dtype)`` and then puts back the
  default it found (transformers' ``modeling_utils.local_torch_dtype``). Two loads at once interleave: measured
  with plain ``from_pretrained`` in two threads (tiny DistilBERT in bf16, tiny Llama in fp32, started together 30
  times), 20 of the 30 rounds gave a model of mixed dtypes or left bf16 the default for the rest of the process, so
  that everything made afterwards without a dtype was bf16: in CI's load test a QA model built half in bf16 could not
  run its fp32 products (oneDNN: "could not create a primitive descriptor"), and whisper, which builds in the default
  dtype, came out half bf16 ("mixed dtype" in its layer norms: every ``/transcribe`` failed). Even one load at a time
  makes every *other* thread's new tensors bf16 for the 10-20 ms it builds.
- transformers imports its classes lazily, on first attribute access; two threads asking at once can see a
  half-imported module (``cannot import name 'AutoConfig' from 'transformers'``, seen in the load test).

So every model is built under :func:`building` (one re-entrant lock for the process; the transformers classes the
engine uses imported once, inside it) and transformers models through :func:`pretrained`, which builds them in
float32, the default, and casts their weights afterwards: the default dtype is never changed, for any thread.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["building", "pretrained", "load_tokenizer"]

_LOCK = threading.RLock()
_imported = False

# transformers' lazily imported names that the engine uses, resolved once under the lock
_NAMES = ("AutoConfig", "AutoTokenizer", "AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM",
          "AutoModelForSequenceClassification", "AutoModelForQuestionAnswering", "GPT2Config", "GPT2LMHeadModel",
          "PreTrainedTokenizerFast", "DynamicCache")


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Hold while building a model (or its tokenizer): one build at a time in this process, under a float32
    default dtype (the engine casts what it builds itself; a program that made another dtype its default gets it
    back afterwards). If what ran inside changed the default, it is put back, and logged: it would change every
    thread's new tensors."""
    global _imported
    with _LOCK:
        if not _imported:
            import transformers

            for name in _NAMES:
                getattr(transformers, name)
            _imported = True
        default = torch.get_default_dtype()
        if default != torch.float32:  # whisper.load_model builds in the default: at bf16, a half-bf16 model
            torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            if torch.get_default_dtype() != torch.float32:
                log.warning("a model build left torch's default dtype at %s", torch.get_default_dtype())
            torch.set_default_dtype(default)


def pretrained(cls: type | str, folder: str | Path, dtype: torch.dtype = torch.float32, *, new_head: bool = False,
               **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder, dtype=dtype, **kwargs)`` without touching torch's default dtype (``cls``: a model
    class, or the name of one of transformers', looked up under the lock): built in float32
    (which transformers sets as the default while it builds: no change) under :func:`building`, then cast to
    ``dtype`` the way transformers' own build at ``dtype`` has it (:func:`_cast`; tests/test_loading.py compares the
    two). Cost of a bf16/fp16 ``dtype``: the float32 weights exist for a moment (2x a bf16 checkpoint), and a cast.
    ``new_head``: the fine-tunes' new task head, on purpose: transformers' "newly initialized" warning is silenced
    for this build (its verbosity is process-wide too, so it is set and put back under the same lock)."""
    with building():
        import transformers

        if isinstance(cls, str):
            cls = getattr(transformers, cls)
        verbosity = transformers.logging.get_verbosity()
        if new_head:
            transformers.logging.set_verbosity_error()
        try:
            model = cls.from_pretrained(folder, dtype=torch.float32, **kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)
    if dtype != torch.float32:
        _cast(model, dtype)
    return model


def load_tokenizer(folder: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained(folder, **kwargs)`` under :func:`building`."""
    with building():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, **kwargs)


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast ``model``'s floating-point parameters and saved buffers to ``dtype`` in place (tied ones once), as
    transformers' own build at ``dtype`` has them: buffers computed at build time and not saved (Llama's rotary
    frequencies) keep their dtype, and so do the modules its dtype plan keeps in float32 at that dtype."""
    plan = getattr(model, "_get_dtype_plan", lambda _dtype: {})(dtype)
    keep = tuple(k for k in (pattern.strip(".*") for pattern in plan) if k)
    with torch.no_grad():
        for prefix, module in model.named_modules():
            tensors = [*module._parameters.items(),
                       *((n, b) for n, b in module._buffers.items() if n not in module._non_persistent_buffers_set)]
            for name, tensor in tensors:
                if (tensor is not None and tensor.is_floating_point() and tensor.dtype != dtype
                        and not any(k in f"{prefix}.{name}" for k in keep)):
                    tensor.data = tensor.data.to(dtype)
    model.config.dtype = dtype
