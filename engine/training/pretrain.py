"""Pretraining a small GPT from scratch, watched step by step: ``engine.pretrain(text, **options)``.

nanoGPT's training loop as an engine trainer (the model and the recipe are in :mod:`engine.training.gpt`, the data in
:mod:`engine.training.data`):

- :func:`pretrain` checks everything in the caller's thread (options, name, text, that no other training runs),
  makes the tokenizer and the token array, then runs :func:`_train` in the engine's training worker and returns the
  run: an iterator of :class:`PretrainProgress` events. ``run.stop()`` (or closing it) stops at the next step and
  keeps what was learnt.
- :func:`_train` is the loop: an evaluation every ``eval_interval`` steps (train and validation loss, a sample of
  text), one optimizer step per batch, and at the end (or at a stop) one folder saved and registered: the model as
  safetensors, the tokenizer, ``card.json`` (settings, losses, the loss curve, where the text came from), the token
  array (``tokens.bin``) and the optimizer state (``training_state.pt``), so that ``pretrain(name=..., resume=True,
  max_iters=...)`` continues the run, even after a restart.
- :func:`estimate` builds the model and times a few steps: the parameter count and the time per step before a run.

    >>> run = engine.pretrain(corpus="shakespeare", name="my-gpt", max_iters=200)
    >>> for event in run:
    ...     if event.val_loss is not None: print(event.step, event.val_loss, event.sample[:60])
    >>> engine.generate("ROMEO:", model="my-gpt", max_new_tokens=40).text
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from ..errors import BusyError, InvalidInputError, InvalidOptionsError, UnknownModelError
from ..loading import load_tokenizer, pretrained
from .data import CORPORA, TOKENS_FILE, TokenData, check_corpus, corpus_text, encode, make_tokenizer, text_digest
from .gpt import (PretrainOptions, ThreadChooser, build_model, count_parameters, estimate_loss, get_lr, loss_of,
                  make_optimizer, make_options, sample)
from .runner import TrainingRun
from .store import Card, check_model_name, now_iso

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK, FAMILY, KIND = "text-generation", "causal-lm", "pretrained from scratch"
STATE_FILE = "training_state.pt"
RESUMABLE = ("max_iters", "eval_interval", "eval_iters", "sample_tokens")  # what a continued run may change
EVENTS_WINDOW_S = 2.0  # tokens per second over about this much recent time


# --- progress events ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PretrainProgress:
    """One step of a run, as it happens. ``val_loss`` and ``sample`` are None between evaluations."""

    step: int  # optimizer steps done
    max_iters: int
    train_loss: float | None  # this step's batch loss; at an evaluation, the mean over eval_iters training batches
    val_loss: float | None  # the mean over eval_iters validation batches (evaluations only)
    learning_rate: float  # used for the step just done (at an evaluation: for the next step)
    tokens_per_second: float  # training tokens per second, recently
    elapsed_s: float  # since the run (or its continuation) started, evaluations included
    eta_s: float | None  # estimated time to max_iters
    sample: str | None = None  # generated text (evaluations only)
    done: bool = False
    model: str | None = None  # the registered model's name (the last event)
    stopped: bool = False  # the last event of a run that was stopped before max_iters
    message: str = ""
    threads: int = 0  # CPU threads the step ran with (the faster of torch's setting and one, measured)

    @property
    def evaluation(self) -> bool:
        return self.val_loss is not None



# --- one run's setup, made in the caller's thread -------------------------------------------------------------------
@dataclasses.dataclass
class _Setup:
    engine: "Engine"
    name: str
    options: PretrainOptions
    tokenizer: Any
    data: TokenData
    staging: Path  # the run's folder until it is published: tokens.bin, tokenizer, then the model
    device: str
    autocast: torch.dtype | None
    data_card: dict[str, Any]
    resume_from: Path | None = None  # the published model a continued run starts from
    state: dict[str, Any] | None = None  # the saved training state of a continued run


def _device(engine: "Engine", device: str | None) -> tuple[str, torch.dtype | None]:
    """The device to train on and the autocast dtype: bf16 on a GPU that supports it, else fp32 everywhere."""
    device = device or engine.policy.device
    if device == "auto":
        device = engine.policy.device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidOptionsError("device 'cuda' was asked for but no CUDA GPU is visible; use 'cpu'.")
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device != "cpu":
        raise InvalidOptionsError(f"device must be 'cpu' or 'cuda' (or empty for the engine's), got {device!r}.")
    return "cpu", None


def _new_setup(engine: "Engine", name: str, text: str, o: PretrainOptions, device: str,
               autocast: torch.dtype | None, source: str) -> _Setup:
    text = check_corpus(text)
    if o.block_size + 1 > len(text) // 10:  # a token holds at least one character: a check before tokenizing
        raise InvalidOptionsError(f"block_size ({o.block_size}) is too large for this text of {len(text):,} "
                                  f"characters: the validation split (its last 10%) must hold a window of "
                                  f"block_size + 1 tokens. Choose block_size at most {max(1, len(text) // 10 - 1)}, "
                                  "or use a longer text.")
    tokenizer = make_tokenizer(text, o.tokenizer, o.vocab_size)
    tokenizer.model_max_length = o.block_size  # the generation runtime keeps prompts within the context
    staging = engine.trained.staging(name)
    try:
        ids = encode(tokenizer, text)
        data = TokenData.write(staging / TOKENS_FILE, ids, len(tokenizer))
        data.check_block_size(o.block_size)
        tokenizer.save_pretrained(staging)
    except BaseException:
        engine.trained.discard(staging)
        raise
    data_card = {"source": source, "characters": len(text), "tokens": len(data), "train_tokens": data.split_at,
                 "val_tokens": len(data) - data.split_at, "sha256": text_digest(text), "vocab_size": len(tokenizer)}
    return _Setup(engine, name, o, tokenizer, data, staging, device, autocast, data_card)


def _resume_setup(engine: "Engine", name: str, overrides: dict[str, Any], device: str,
                  autocast: torch.dtype | None) -> _Setup:
    card = engine.trained.card(name)
    folder = engine.trained.folder(name)
    if card.kind != KIND or not (folder / STATE_FILE).is_file():
        raise InvalidInputError(f"{name!r} was not pretrained in this app (or has no saved training state), so it "
                                "cannot be continued; start a new run instead.")
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    saved = PretrainOptions(**state["options"])
    changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE and getattr(saved, k) != v)
    if changed:
        raise InvalidOptionsError(f"A continued run keeps its model, tokenizer and recipe; {', '.join(changed)} "
                                  f"cannot change. Only {', '.join(RESUMABLE)} can.")
    o = dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in RESUMABLE})
    if o.max_iters <= state["step"]:
        raise InvalidOptionsError(f"{name!r} has already trained {state['step']:,} steps: choose max_iters above "
                                  f"that to continue it (its run was set to {saved.max_iters:,}).")
    staging = engine.trained.staging(name)
    try:  # the continued run writes a new folder; the published model stays served until it is replaced
        for file in folder.iterdir():
            if file.name.startswith("tokenizer") or file.name in (TOKENS_FILE, "special_tokens_map.json"):
                shutil.copy2(file, staging / file.name)
        tokenizer = load_tokenizer(staging)
        data = TokenData(staging / TOKENS_FILE, len(tokenizer))
    except BaseException:
        engine.trained.discard(staging)
        raise
    return _Setup(engine, name, o, tokenizer, data, staging, device, autocast, dict(card.data), folder, state)


# --- the public API -------------------------------------------------------------------------------------------------
def pretrain(engine: "Engine", text: str | None = None, name: str = "my-gpt", options: PretrainOptions | None = None,
             *, corpus: str | None = None, source: str | None = None, resume: bool = False,
             device: str | None = None, **overrides: Any) -> TrainingRun:
    """Train a GPT from scratch on ``text`` (or a bundled ``corpus``: ``"shakespeare"``, ``"tang-poems"``) and save it
    as the model ``name``; returns the run, an iterator of :class:`PretrainProgress` events (the last has
    ``done=True`` and ``model=name``).

    ``overrides`` are :class:`PretrainOptions` fields with nanoGPT's names: ``n_layer, n_head, n_embd, block_size,
    dropout, batch_size, max_iters, learning_rate, min_lr, warmup_iters, lr_decay_iters, weight_decay, beta1, beta2,
    grad_clip, eval_interval, eval_iters, optimizer`` (adamw, adam, sgd), ``seed``, and ``tokenizer`` ("char" or
    "bpe") with ``vocab_size``. ``device``: "cpu", "cuda" or None (the engine's). ``resume=True`` continues the
    saved run ``name`` from its last step up to a new ``max_iters`` (no text needed). ``source`` describes the text
    for the model's card. Bad options raise :class:`InvalidOptionsError` before any compute; while another training
    runs, :class:`BusyError`. ``run.stop()`` stops at the next step and saves what was learnt (so does closing the
    run)."""
    if engine.training.running:
        raise BusyError(f"Another training run is going: {engine.training.running}. One training runs at a time: "
                        "wait for it to finish, or stop it first.")
    name = check_model_name(name, engine.registry, engine.trained)
    device, autocast = _device(engine, device)
    if resume:
        if text is not None or corpus is not None:
            raise InvalidInputError("A continued run trains on its saved tokens: give no text or corpus with "
                                    "resume=True.")
        make_options(**overrides)  # unknown names and ranges, as for a new run
        setup = _resume_setup(engine, name, overrides, device, autocast)
    else:
        o = make_options(options, **overrides)
        if corpus is not None:
            if text is not None:
                raise InvalidInputError("Give either a text or a bundled corpus, not both.")
            if corpus not in CORPORA:
                raise UnknownModelError(corpus, list(CORPORA), what="corpus")
            text, source = corpus_text(corpus), source or f"bundled corpus {corpus!r}"
        if text is None:
            raise InvalidInputError("Give a training text (or a bundled corpus: " + ", ".join(CORPORA) + ").")
        setup = _new_setup(engine, name, text, o, device, autocast, source or "text given through the API")
    try:
        return engine.start_training(f"pretraining {name!r}", lambda should_stop: _train(setup, should_stop))
    except BaseException:
        engine.trained.discard(setup.staging)
        raise


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a run would be, before it starts."""

    parameters: int
    vocab_size: int
    seconds_per_step: float  # measured on this device (the faster thread setting on a CPU)
    tokens_per_step: int
    seconds_total: float  # max_iters steps and the evaluations (each about 2 x eval_iters forward passes)
    device: str


def estimate(engine: "Engine", text: str | None = None, options: PretrainOptions | None = None, *,
             corpus: str | None = None, steps: int = 3, device: str | None = None, **overrides: Any) -> Estimate:
    """The parameter count and the time per step of a run with these options, from ``steps`` timed steps on random
    tokens (after one warm-up step). The vocabulary is the text's characters (char) or ``vocab_size`` (bpe)."""
    o = make_options(options, **overrides)
    device, autocast = _device(engine, device)
    text = corpus_text(corpus) if corpus is not None else text
    vocab = o.vocab_size if o.tokenizer == "bpe" else len(set(check_corpus(text))) if text else 256
    model = build_model(o, vocab).to(device).train()
    optimizer = make_optimizer(model, o, device)
    generator = torch.Generator().manual_seed(o.seed)
    original = torch.get_num_threads()
    best: dict[int, float] = {}
    try:
        for threads in ThreadChooser(device).candidates:
            torch.set_num_threads(threads)
            times = []
            for _ in range(steps + 1):  # the first step warms up
                x = torch.randint(vocab, (o.batch_size, o.block_size), generator=generator).to(device)
                t0 = time.perf_counter()
                _step(model, optimizer, x, x, o, 0, autocast)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            best[threads] = min(times[1:])
    finally:
        torch.set_num_threads(original)
    per_step = min(best.values())
    evals = o.max_iters // o.eval_interval + 1
    total = per_step * (o.max_iters + evals * 2 * o.eval_iters / 3)  # a forward pass: about a third of a step
    return Estimate(count_parameters(model), vocab, per_step, o.batch_size * o.block_size, total, device)


def runs(engine: "Engine") -> list[Card]:
    """The models pretrained in this app, newest first (their cards hold settings, losses and curves)."""
    return [c for c in engine.trained_models(TASK) if c.kind == KIND]


# --- the loop (in the training worker) --------------------------------------------------------------------------------
def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          o: PretrainOptions, step: int, autocast: torch.dtype | None) -> torch.Tensor:
    """One optimizer step at ``step``'s learning rate; returns the batch loss (a 0-d tensor, not synchronised)."""
    lr = get_lr(step, o)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_of(model, x, y, autocast)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip, foreach=True)
    optimizer.step()
    return loss.detach()


def _train(s: _Setup, should_stop: Callable[[], bool]) -> Iterator[PretrainProgress]:
    """The training loop; ends with one event with ``done=True`` after the model is saved and registered."""
    o, data, device = s.options, s.data, s.device
    chooser = ThreadChooser(device)
    try:
        if s.resume_from is not None:
            model = pretrained("GPT2LMHeadModel", s.resume_from).to(device).train()
            model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = o.dropout
        else:
            model = build_model(o, len(s.tokenizer)).to(device).train()
        optimizer = make_optimizer(model, o, device)
        state = s.state or {}
        if state:
            optimizer.load_state_dict(state["optimizer"])
        step = start = int(state.get("step", 0))
        batches = torch.Generator().manual_seed(o.seed + 1)  # training batches
        if "batches" in state:
            batches.set_state(state["batches"])
        evals = torch.Generator().manual_seed(o.seed + 2)  # evaluation batches and samples: runs compare alike
        curve: list[list[float]] = [list(p) for p in state.get("curve", [])]  # [step, train, val] at evaluations
        before = float(state.get("elapsed_s", 0.0))
        prompt = [int(data.split("val")[0])]  # samples start from the first token of the validation text
        tokens_per_step = o.batch_size * o.block_size
        t_start = time.perf_counter()
        step_times: list[float] = []  # seconds of recent training steps (not evaluations)
        probe = data.get_batch("val", o.batch_size, o.block_size, torch.Generator().manual_seed(0), device)[0]
        with torch.no_grad():
            chooser.calibrate(lambda: model(input_ids=probe, use_cache=False))
        eval_seconds = 0.0
        last: dict[str, float] = {}
        stopped = False
        while True:
            if (step - start) % o.eval_interval == 0 or step == o.max_iters:
                t0 = time.perf_counter()
                chooser.use_best()
                losses = estimate_loss(model, data, o, evals, device, s.autocast)
                text = sample(model, s.tokenizer, prompt, o.sample_tokens, o.block_size, evals, device)
                eval_seconds = time.perf_counter() - t0
                if curve and curve[-1][0] == step:  # a continued run evaluates again where it stopped
                    curve.pop()
                curve.append([step, losses["train"], losses["val"]])
                last = losses
                chooser.reset()
                yield _event(step, o, losses["train"], losses["val"], get_lr(step, o), step_times, tokens_per_step,
                             t_start, eval_seconds, text)
            if step >= o.max_iters:
                break
            if should_stop():
                stopped = True
                break
            threads = chooser.threads()
            x, y = data.get_batch("train", o.batch_size, o.block_size, batches, device)
            t0 = time.perf_counter()
            loss = float(_step(model, optimizer, x, y, o, step, s.autocast))
            seconds = time.perf_counter() - t0
            chooser.record(threads, seconds)
            step_times.append(seconds)
            del step_times[:-50]
            step += 1
            yield dataclasses.replace(_event(step, o, loss, None, get_lr(step - 1, o), step_times, tokens_per_step,
                                             t_start, eval_seconds, None), threads=threads)
        elapsed = time.perf_counter() - t_start
        if step == start:  # nothing learnt: nothing to save
            s.engine.trained.discard(s.staging)
            yield PretrainProgress(step, o.max_iters, None, None, get_lr(step, o), 0.0, elapsed, None, None, True,
                                   None, True, "Stopped before the first step: nothing was saved.")
            return
        if stopped and (not curve or curve[-1][0] != step):  # the losses where it stopped, for the card
            last = estimate_loss(model, data, o, evals, device, s.autocast)
            curve.append([step, last["train"], last["val"]])
        _save(s, model, optimizer, step, curve, batches, before + elapsed, stopped)
    except BaseException:
        s.engine.trained.discard(s.staging)
        raise
    finally:
        chooser.restore()
    message = (f"Stopped at step {step:,} of {o.max_iters:,}; saved as {s.name!r} (continue it to go on)."
               if stopped else f"Done: {step:,} steps; saved as {s.name!r}.")
    yield PretrainProgress(step, o.max_iters, last.get("train"), last.get("val"), get_lr(step, o),
                           _tokens_per_second(step_times, tokens_per_step), elapsed, 0.0, None, True, s.name,
                           stopped, message)


def _tokens_per_second(step_times: list[float], tokens_per_step: int) -> float:
    recent = step_times[-20:]
    return tokens_per_step * len(recent) / sum(recent) if recent and sum(recent) > 0 else 0.0


def _event(step: int, o: PretrainOptions, train_loss: float, val_loss: float | None, lr: float,
           step_times: list[float], tokens_per_step: int, t_start: float, eval_seconds: float,
           text: str | None) -> PretrainProgress:
    recent = step_times[-20:]
    per_step = sum(recent) / len(recent) if recent else None
    left = o.max_iters - step
    evals_left = left // o.eval_interval + (1 if left and left % o.eval_interval else 0)
    eta = left * per_step + evals_left * eval_seconds if per_step is not None else None
    return PretrainProgress(step, o.max_iters, train_loss, val_loss, lr, _tokens_per_second(step_times,
                            tokens_per_step), time.perf_counter() - t_start, eta, text)


def _save(s: _Setup, model: Any, optimizer: torch.optim.Optimizer, step: int, curve: list[list[float]],
          batches: torch.Generator, elapsed: float, stopped: bool) -> None:
    """Write the model, the training state and the card into the run's folder, and publish it under its name."""
    o = s.options
    model.save_pretrained(s.staging, safe_serialization=True)
    s.tokenizer.save_pretrained(s.staging)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "options": dataclasses.asdict(o),
                "curve": curve, "batches": batches.get_state(), "elapsed_s": elapsed}, s.staging / STATE_FILE)
    params = count_parameters(model)
    final = curve[-1] if curve else [step, None, None]
    card = Card(
        name=s.name, task=TASK, family=FAMILY, kind=KIND,
        description=(f"GPT of {o.n_layer} layers, {o.n_head} heads, {o.n_embd} wide, context {o.block_size}, "
                     f"{o.tokenizer} tokenizer of {len(s.tokenizer):,} tokens, trained {step:,} steps on "
                     f"{s.data_card.get('source', 'a text')}"),
        settings={**dataclasses.asdict(o), "device": s.device, "autocast": str(s.autocast) if s.autocast else None},
        metrics={"step": step, "max_iters": o.max_iters, "train_loss": final[1], "val_loss": final[2],
                 "best_val_loss": min((p[2] for p in curve), default=None), "curve": curve, "stopped": stopped,
                 "elapsed_s": round(elapsed, 1), "parameters": params},
        data=s.data_card, chat=False,
        size=f"{params / 1e6:.2f} M parameters, {params * 4 / 2**20:.1f} MiB", created=now_iso())
    s.engine.trained.publish(s.staging, card)
