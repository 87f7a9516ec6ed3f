"""Helpers every task uses: input checks with messages that say what to do, uploaded text files, and
length-sorted batching."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from ..errors import CancelledError, EngineError, InputTooLargeError, InvalidInputError
from ..worker import Request

log = logging.getLogger(__name__)
T = TypeVar("T")


def check_text(text: object, what: str, max_chars: int) -> str:
    """``text`` as a stripped string; refuses non-text, empty text and text beyond ``max_chars``."""
    if not isinstance(text, str):
        raise InvalidInputError(f"The {what} must be text, not {type(text).__name__}.")
    if "\x00" in text:
        raise InvalidInputError(f"The {what} contains binary data (NUL bytes); paste plain text instead.")
    stripped = text.strip()
    if not stripped:
        raise InvalidInputError(f"The {what} is empty: type or paste some text.")
    if len(text) > max_chars:
        raise InputTooLargeError(f"The {what} has {len(text):,} characters; the limit is {max_chars:,}. "
                                 "Shorten it, or split it into parts.")
    return stripped


def read_text_file(path: str | Path, max_bytes: int) -> str:
    """An uploaded text file's contents (UTF-8, with or without a byte-order mark), or a clear refusal."""
    from ..scoring import decode_upload

    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputTooLargeError(f"{path.name} has {size:,} bytes; the upload limit is {max_bytes:,}.")
    return decode_upload(path.read_bytes(), path.name)


def length_sorted_batches(items: Sequence[T], length: Callable[[T], int], batch_size: int) -> list[list[int]]:
    """Indices of ``items`` in batches of similar length, so that little compute is spent on padding."""
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def run_each(requests: Iterable[Request], fn: Callable[[Request], object]) -> None:
    """Run ``fn`` on each request alone, finishing each with its result or its own error."""
    for request in requests:
        if request.cancelled:
            request.fail(CancelledError("Cancelled."))
            continue
        try:
            request.finish(fn(request))
        except EngineError as e:
            request.fail(e)
        except Exception as e:  # one request's bug must not take its batch-mates down; it is logged in full
            log.exception("request %s failed", request.id)
            request.fail(e)


def column_major_weights(model) -> None:
    """Store every Linear weight of a torch ``model`` transposed in memory: the same values and shape,
    ``W.t().contiguous().t()``, so ``x @ W.t()`` reads a contiguous (in, out) matrix. On this CPU it made SmolLM2's
    decoding steps faster at every batch size (bench/generation.py: batch 1 from 15.3 to 20.9 tokens/s, the
    8-request workload from 2.9x to 3.7x the baseline), with identical tokens; Marian's beam steps gained nothing
    measurable, so translation does not use it. The other tensors are copied too, so that nothing keeps the
    memory-mapped weights file resident."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.data = module.weight.data.t().contiguous().t()
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_contiguous():
                tensor.data = tensor.data.clone()
