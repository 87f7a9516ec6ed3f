"""The model and the recipe of pretraining: nanoGPT's ``model.py`` and the pure parts of its ``train.py``.

The model is a transformers ``GPT2LMHeadModel`` (nanoGPT's architecture: learned positions, pre-norm blocks, GELU,
input and output embeddings tied), so a saved model is an ordinary causal LM that the generation runtime
(:mod:`engine.tasks.generation`), the next-token lens and ``engine.generate(model=name)`` serve unchanged.

- :class:`PretrainOptions`: every setting, with nanoGPT's names and its CPU recipe as defaults (4 layers, 4 heads,
  128 wide, context 64, batch 12, 2000 steps, AdamW at 1e-3 with 100 warm-up steps and cosine decay to 1e-4),
  validated in one place (:func:`_verify_options`) before any compute.
- :func:`get_lr`: the learning rate as a pure function of the step (linear warm-up, cosine decay, then ``min_lr``).
- :func:`make_optimizer`, :func:`loss_of`, :func:`estimate_loss` (the mean loss of ``eval_iters`` random batches of
  each split, under ``torch.inference_mode``, no_grad's leaner form), :func:`sample` (text at an evaluation) and
  :class:`ThreadChooser` (one thread or all, whichever is faster here and now).

The loop itself, saving and the public API are in :mod:`engine.training.pretrain`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import InvalidOptionsError
from ..loading import building
from .data import MAX_VOCAB, MIN_VOCAB, TOKENIZERS, TokenData

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "adam", "sgd")
SAMPLE_TEMPERATURE = 0.8  # as nanoGPT's sample.py


# --- options ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    """The model, the tokenizer and the recipe (nanoGPT's names; defaults: its CPU recipe for shakespeare_char)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context: tokens the model reads
    dropout: float = 0.0
    tokenizer: str = "char"  # "char" | "bpe"
    vocab_size: int = 1024  # bpe only: the vocabulary it learns
    batch_size: int = 12
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9  # adam(w) beta1; sgd: the momentum
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = off
    eval_interval: int = 250
    eval_iters: int = 20
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd" (with momentum beta1)
    seed: int = 1337
    sample_tokens: int = 200  # generated at each evaluation

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type in ("int", "int | None"):
                object.__setattr__(self, f.name, _whole(f.name, getattr(self, f.name)))
            elif f.type == "float":
                object.__setattr__(self, f.name, _number(f.name, getattr(self, f.name)))
        _verify_options(self)

    @property
    def decay_iters(self) -> int:
        return self.lr_decay_iters or self.max_iters


def _whole(name: str, value: Any) -> Any:
    if value is None and name == "lr_decay_iters":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                          and not value.is_integer()):
        raise InvalidOptionsError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOptionsError(f"{name} must be a number, got {value!r}.")
    return float(value)


#: whole-number options: (lowest, highest)
RANGES: dict[str, tuple[int, int]] = {
    "n_layer": (1, 48), "n_head": (1, 64), "n_embd": (8, 4096), "block_size": (4, 4096), "batch_size": (1, 1024),
    "max_iters": (1, 1_000_000), "warmup_iters": (0, 1_000_000), "lr_decay_iters": (1, 1_000_000),
    "eval_interval": (1, 1_000_000), "eval_iters": (1, 1000), "vocab_size": (MIN_VOCAB, MAX_VOCAB),
    "seed": (0, 2**63 - 1), "sample_tokens": (0, 2000),
}


def _verify_options(o: PretrainOptions) -> None:
    """Every option's range, in one place; each message names the option and what to choose."""
    for name, (low, high) in RANGES.items():
        value = getattr(o, name)
        if value is not None and not low <= value <= high:
            raise InvalidOptionsError(f"{name} must be between {low:,} and {high:,}, got {value:,}.")
    if o.n_embd % o.n_head:
        fits = sorted({o.n_embd - o.n_embd % o.n_head, o.n_embd - o.n_embd % o.n_head + o.n_head} - {0})
        raise InvalidOptionsError(f"n_embd ({o.n_embd}) must be divisible by n_head ({o.n_head}): each head gets "
                                  f"n_embd / n_head dimensions. Choose n_embd {' or '.join(map(str, fits))}, or "
                                  "another n_head.")
    if o.optimizer not in OPTIMIZERS:
        raise InvalidOptionsError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (sgd uses momentum beta1), "
                                  f"got {o.optimizer!r}.")
    if o.tokenizer not in TOKENIZERS:
        raise InvalidOptionsError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {o.tokenizer!r}.")
    if not 0 <= o.dropout < 1:
        raise InvalidOptionsError(f"dropout must be at least 0 and below 1 (0.0 to 0.2 is usual), got {o.dropout}.")
    if not 0 < o.learning_rate <= 10:
        raise InvalidOptionsError(f"learning_rate must be above 0 and at most 10, got {o.learning_rate}. 1e-3 suits "
                                  "AdamW on a small GPT; SGD needs more, around 0.1 to 1.")
    if not 0 <= o.min_lr <= o.learning_rate:
        raise InvalidOptionsError(f"min_lr must be between 0 and learning_rate ({o.learning_rate}), got {o.min_lr}.")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(o, name) < 1:
            raise InvalidOptionsError(f"{name} must be at least 0 and below 1, got {getattr(o, name)}.")
    if not 0 <= o.weight_decay <= 10:
        raise InvalidOptionsError(f"weight_decay must be between 0 and 10 (0.1 is usual), got {o.weight_decay}.")
    if not 0 <= o.grad_clip <= 1000:
        raise InvalidOptionsError(f"grad_clip must be between 0 (off) and 1000, got {o.grad_clip}.")


def make_options(options: PretrainOptions | None = None, **overrides: Any) -> PretrainOptions:
    """``options`` (or the defaults) with ``overrides``; an unknown name lists the known ones."""
    fields = {f.name for f in dataclasses.fields(PretrainOptions)}
    if unknown := sorted(set(overrides) - fields):
        raise InvalidOptionsError(f"Unknown pretraining option(s) {', '.join(unknown)}; the options are "
                                  f"{', '.join(sorted(fields))}.")
    return dataclasses.replace(options or PretrainOptions(), **overrides)


def get_lr(step: int, o: PretrainOptions) -> float:
    """The learning rate at ``step``: linear warm-up over ``warmup_iters``, cosine decay to ``min_lr`` at
    ``lr_decay_iters`` (default ``max_iters``), then ``min_lr`` (nanoGPT's ``get_lr``)."""
    if step < o.warmup_iters:
        return o.learning_rate * (step + 1) / (o.warmup_iters + 1)
    if step > o.decay_iters or o.decay_iters <= o.warmup_iters:
        return o.min_lr
    ratio = (step - o.warmup_iters) / (o.decay_iters - o.warmup_iters)
    return o.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (o.learning_rate - o.min_lr)


# --- the model --------------------------------------------------------------------------------------------------------
def model_config(o: PretrainOptions, vocab_size: int) -> Any:
    """A GPT-2 configuration of nanoGPT's shape, with input and output embeddings tied."""
    from transformers import GPT2Config

    # GPT-2's GELU (tanh form) as torch's one fused kernel rather than transformers' "gelu_new", five element-wise
    # operations: the same function, and 13% less CPU time per training step of the CPU recipe (76 -> 67 ms)
    return GPT2Config(vocab_size=vocab_size, n_positions=o.block_size, n_embd=o.n_embd, n_layer=o.n_layer,
                      n_head=o.n_head, resid_pdrop=o.dropout, embd_pdrop=o.dropout, attn_pdrop=o.dropout,
                      activation_function="gelu_pytorch_tanh",
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                      use_cache=True)


def build_model(o: PretrainOptions, vocab_size: int) -> Any:
    with building():  # the seed and the draws it makes, together (one build at a time: engine.loading)
        from transformers import GPT2LMHeadModel

        torch.manual_seed(o.seed)
        return GPT2LMHeadModel(model_config(o, vocab_size))


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied embedding counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def make_optimizer(model: torch.nn.Module, o: PretrainOptions, device: str) -> torch.optim.Optimizer:
    """nanoGPT's groups: weight decay on matrices and embeddings, none on biases and norms. The fused kernels (one
    pass over every parameter) where torch has them for the device."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = get_lr(0, o)
    if o.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(groups, lr=lr, momentum=o.beta1, **kw)  # noqa: E731
    else:
        cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        make = lambda **kw: cls(groups, lr=lr, betas=(o.beta1, o.beta2), **kw)  # noqa: E731
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return make(foreach=device != "cpu")


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None) -> torch.Tensor:
    """Mean cross-entropy of the next token at every position: x, y (B, T) -> ()."""
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))


EVAL_CHUNK_TOKENS = 1 << 15  # evaluation batches go through the model together, up to this many tokens at once


@torch.inference_mode()
def estimate_loss(model: torch.nn.Module, data: TokenData, o: PretrainOptions, generator: torch.Generator,
                  device: str, autocast: torch.dtype | None) -> dict[str, float]:
    """The mean loss over ``eval_iters`` random batches of each split, in eval mode (no dropout). The batches are
    drawn as nanoGPT draws them and go through the model in a few large forward passes rather than one by one (the
    same mean: every batch has the same number of tokens)."""
    model.eval()
    out = {}
    rows = max(1, EVAL_CHUNK_TOKENS // o.block_size)
    for split in ("train", "val"):
        batches = [data.get_batch(split, o.batch_size, o.block_size, generator, device) for _ in range(o.eval_iters)]
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])  # (eval_iters * B, T)
        total = sum(float(loss_of(model, x[i:i + rows], y[i:i + rows], autocast)) * len(x[i:i + rows])
                    for i in range(0, len(x), rows))
        out[split] = total / len(x)
    model.train()
    return out


@torch.inference_mode()
def sample(model: torch.nn.Module, tokenizer: Any, start: list[int], n: int, block_size: int,
           generator: torch.Generator, device: str) -> str:
    """``n`` tokens drawn at temperature 0.8 after ``start``, the context cropped to ``block_size`` (nanoGPT)."""
    if n == 0:
        return ""
    model.eval()
    ids = torch.tensor([start], device=device)
    new: list[int] = []
    for _ in range(n):
        logits = model(input_ids=ids[:, -block_size:], use_cache=False).logits[0, -1].float()
        probs = torch.softmax(logits / SAMPLE_TEMPERATURE, dim=-1).cpu()
        token = int(torch.multinomial(probs, 1, generator=generator))
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]], device=device)], dim=1)
    model.train()
    return tokenizer.decode(new)


class ThreadChooser:
    """On the CPU, the faster of torch's thread count and a single thread, measured on real training steps.

    Why: on a 2-core machine that other work shares, two OpenMP threads that wait on each other at every small
    kernel ran a step of the CPU recipe 4x slower than one thread did, while on an idle machine two threads are
    faster. So after each evaluation the next few steps try each candidate and the rest of the interval uses the
    faster (bench/pretrain.py reports the choice)."""

    def __init__(self, device: str, trial_steps: int = 3) -> None:
        self.original = torch.get_num_threads()
        self.candidates = [self.original, 1] if device == "cpu" and self.original > 1 else [self.original]
        self.trial_steps = trial_steps
        self.reset()

    def reset(self) -> None:
        """Measure again (the machine's load changes): the next steps try each candidate."""
        self.best = getattr(self, "choice", None) or getattr(self, "best", self.candidates[0])
        self.times: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.choice: int | None = self.candidates[0] if len(self.candidates) == 1 else None

    def calibrate(self, work: Callable[[], Any], repeats: int = 2) -> None:
        """Pick ``best`` from ``work`` (e.g. an evaluation batch) timed with each candidate, before any is measured."""
        if len(self.candidates) > 1:
            times = {}
            for n in self.candidates:
                torch.set_num_threads(n)
                work()  # warm-up
                t0 = time.perf_counter()
                for _ in range(repeats):
                    work()
                times[n] = time.perf_counter() - t0
            self.best = min(times, key=times.get)
            log.info("threads: %s (forward passes with %s)", self.best,
                     ", ".join(f"{n}: {t / repeats * 1000:.1f} ms" for n, t in times.items()))

    def use_best(self) -> None:
        """The last measured choice, for work that is not a training step (evaluations)."""
        if torch.get_num_threads() != self.best:
            torch.set_num_threads(self.best)

    def threads(self) -> int:
        """The thread count for the next step (set in torch for this thread)."""
        n = self.choice or next(n for n in self.candidates if len(self.times[n]) < self.trial_steps)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    def record(self, threads: int, seconds: float) -> None:
        if self.choice is None:
            self.times[threads].append(seconds)
            if all(len(t) >= self.trial_steps for t in self.times.values()):  # the best of each, the first dropped
                self.choice = min(self.candidates, key=lambda n: min(self.times[n][1:]))
                log.debug("threads: %s (steps with %s)", self.choice,
                          ", ".join(f"{n}: {min(t[1:]) * 1000:.1f} ms" for n, t in self.times.items()))

    def restore(self) -> None:
        torch.set_num_threads(self.original)
