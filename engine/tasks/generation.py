"""Text generation with a causal (GPT-type) language model, and the next-token lens.

A language model gives, for a context, a probability for every token of its vocabulary: P(w | context) =
softmax(logits). Generation repeats one step: reshape that distribution (repetition penalty, temperature, top-k,
top-p), pick a token (the most likely one when temperature is 0, else a draw), append it, and go again.

Three pieces, each small:

- :func:`~engine.tasks.sampling.sample_next_token` (in ``sampling.py``) is pure: logits and options in, token ids
  out. Each row draws from its own ``torch.Generator``, so a seed gives the same text whatever else shares the batch.
- :class:`CausalLM` serves one model. ``run_batch`` decodes every request together, one forward pass per step, with a
  KV cache, left padding, an attention mask and explicit position ids. Each row keeps its own options, seed and stop
  criteria; finished or cancelled rows leave the batch at once (their cache rows are dropped), and a request that
  arrives while a batch is decoding joins it at the next step (continuous batching: the worker's ``more``).
- :func:`generate`, :func:`stream` and :func:`next_token` are the public API (``engine.generate(...)`` and so on).

    >>> result = engine.generate("The capital of France is", max_new_tokens=8, temperature=0)
    >>> result.text, result.finish_reason, [round(t.prob, 2) for t in result.tokens]
    >>> lens = engine.next_token("The capital of France is", top_k=5)
    >>> [(t.token, round(t.prob, 3)) for t in lens.top], lens.other
"""
from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence, Union

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import CancelledError, InvalidInputError, InvalidOptionsError
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..llama import LlamaDecoder, unsupported as llama_unsupported
from ..weights import (OneDNNLinear, apply_onednn, apply_weights, bytes_per_token, packs, resolve_weights,
                       weight_layer)
from ..worker import More, Request
from .attention import token_text as token_label
from .common import check_text
from .sampling import (apply_repetition_penalty, entropy_bits, log_normaliser_and_entropy, reshaped_distribution,
                       sample_next_token)

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "text-generation"
MAX_NEW_TOKENS = 2048  # the most tokens one request may ask for (the model's context may allow fewer)
MAX_STOP_SEQUENCES = 8
MAX_STOP_CHARS = 100
MAX_TOP_K = 1000  # beyond this, top-k changes nothing visible; use 0 to turn it off
ALTERNATIVES = 5  # runner-up tokens recorded at each step
FINISH_REASONS = ("length", "stop", "eos", "cancelled")
Prompt = Union[str, Sequence[Mapping[str, str]]]  # a text, or (chat mode) a conversation of {"role", "content"}


# --- options and results ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """How to pick each next token. Per-call changes: ``dataclasses.replace(options, temperature=0)``."""

    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 = greedy: always the most likely token
    top_k: int = 50  # keep the k most likely tokens; 0 = off
    top_p: float = 0.95  # keep the smallest set of tokens whose probability adds up to p; 1 = off
    repetition_penalty: float = 1.1  # >1 makes tokens already in the text less likely; 1 = off
    stop: tuple[str, ...] = ()  # stop before the first of these strings (it is not part of the text)
    seed: int | None = None  # same seed and options, same text; None = a fresh seed (reported in the result)

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        for name in ("max_new_tokens", "top_k", "seed"):
            object.__setattr__(self, name, _whole(name, getattr(self, name)))
        _verify_options(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _whole(name: str, value: Any) -> Any:
    """Integral floats (sliders and JSON send 24.0) as ints; anything else fractional is refused."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidOptionsError(f"{name} must be a whole number, got {value!r}.")


def _verify_options(o: GenerationOptions) -> None:
    """Every option's range, checked in one place; each message says what to choose instead."""
    if name := next((n for n in ("temperature", "top_p", "repetition_penalty")
                     if not isinstance(getattr(o, n), (int, float)) or isinstance(getattr(o, n), bool)
                     or not math.isfinite(getattr(o, n))), None):
        raise InvalidOptionsError(f"{name} must be a number, got {getattr(o, name)!r}.")
    if o.max_new_tokens is None or not 1 <= o.max_new_tokens <= MAX_NEW_TOKENS:
        raise InvalidOptionsError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {o.max_new_tokens}.")
    if not 0 <= o.temperature <= 5:
        raise InvalidOptionsError(f"temperature must be between 0 (greedy) and 5, got {o.temperature}. "
                                  "Around 0.7 is usual; higher is more random.")
    if o.top_k is None or not 0 <= o.top_k <= MAX_TOP_K:
        raise InvalidOptionsError(f"top_k must be between 0 (off) and {MAX_TOP_K}, got {o.top_k}.")
    if not 0 < o.top_p <= 1:
        raise InvalidOptionsError(f"top_p must be above 0 and at most 1 (1 = off), got {o.top_p}.")
    if not 1 <= o.repetition_penalty <= 3:
        raise InvalidOptionsError(f"repetition_penalty must be between 1 (off) and 3, got {o.repetition_penalty}. "
                                  "1.1 to 1.3 is usual.")
    if len(o.stop) > MAX_STOP_SEQUENCES:
        raise InvalidOptionsError(f"At most {MAX_STOP_SEQUENCES} stop sequences, got {len(o.stop)}.")
    for s in o.stop:
        if not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS:
            raise InvalidOptionsError(f"Each stop sequence must be text of 1 to {MAX_STOP_CHARS} characters; "
                                      f"got {s!r}.")
    if o.seed is not None and not 0 <= o.seed < 2**63:
        raise InvalidOptionsError(f"seed must be a whole number from 0 to 2**63 - 1 (or empty for a random one), "
                                  f"got {o.seed}.")


def make_options(options: GenerationOptions | None = None, **overrides: Any) -> GenerationOptions:
    """``options`` (or the defaults) with ``overrides`` applied; an unknown name lists the known ones."""
    fields = {f.name for f in dataclasses.fields(GenerationOptions)}
    if unknown := sorted(set(overrides) - fields):
        raise InvalidOptionsError(f"Unknown generation option(s) {', '.join(unknown)}; the options are "
                                  f"{', '.join(sorted(fields))}.")
    return dataclasses.replace(options or GenerationOptions(), **overrides)


@dataclasses.dataclass(frozen=True)
class Alternative:
    token_id: int
    token: str
    prob: float  # the model's probability (temperature 1, before any reshaping)


@dataclasses.dataclass(frozen=True)
class TokenStep:
    """One generated token and what the model thought at that step."""

    index: int  # 0 for the first generated token
    token_id: int
    token: str  # the token on its own, decoded
    text: str  # the text this step adds to the output (may be empty: half a character, or held back by a stop)
    prob: float  # the model's probability of this token (temperature 1, before penalties and filters)
    entropy: float  # bits: 0 = the model was certain; log2(vocabulary) = it had no idea
    alternatives: tuple[Alternative, ...]  # the model's most likely tokens at this step, best first


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    model: str
    text: str
    tokens: tuple[TokenStep, ...]
    finish_reason: str  # "length" | "stop" | "eos" | "cancelled"
    prompt_tokens: int  # tokens the model read (after the chat template, after any cut)
    chat: bool  # whether the chat template was applied
    seed: int | None  # the seed used (None when greedy): pass it back to get the same text
    options: GenerationOptions
    notes: tuple[str, ...] = ()  # what the engine changed about the request, e.g. a prompt cut to fit the context
    seconds: float = 0.0  # from the prompt's forward pass to the last token (not the time queued)

    @property
    def tokens_per_second(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class TokenProb:
    token_id: int
    token: str
    prob: float  # the model's probability (temperature 1)
    reshaped: float  # after temperature, top-k and top-p: the probability it would be sampled with


@dataclasses.dataclass(frozen=True)
class NextTokenDistribution:
    """P(next token | prompt), before and after temperature / top-k / top-p reshape it."""

    model: str
    prompt_tokens: int
    top: tuple[TokenProb, ...]  # the most likely tokens, best first
    other: float  # the model's probability mass outside ``top``
    other_reshaped: float  # the same after reshaping (0 once top-k keeps no more tokens than are shown)
    entropy: float  # bits, of the model's distribution
    entropy_reshaped: float  # bits, after reshaping
    temperature: float
    top_k: int
    top_p: float
    probs: np.ndarray  # (vocab,) float64, the model's distribution; sums to 1 (within 1e-12)
    reshaped_probs: np.ndarray  # (vocab,) float64, after reshaping; sums to 1 (within 1e-12)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (without the two full-vocabulary arrays)."""
        return {"model": self.model, "prompt_tokens": self.prompt_tokens,
                "tokens": [dataclasses.asdict(t) for t in self.top], "other": self.other,
                "other_reshaped": self.other_reshaped, "entropy": self.entropy,
                "entropy_reshaped": self.entropy_reshaped, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "vocab_size": int(self.probs.shape[0]), "notes": list(self.notes)}


# --- the served model -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prompt turned into the token ids the model reads."""

    ids: tuple[int, ...]
    chat: bool
    notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class GenerationPayload:
    prepared: Prepared
    options: GenerationOptions
    seed: int | None


@dataclasses.dataclass(frozen=True)
class LensPayload:
    prepared: Prepared
    options: GenerationOptions  # temperature, top_k, top_p
    show: int


class _Detokenizer:
    """Incremental decoding: the new text of each step, without re-decoding the whole output each time. It decodes
    from a few tokens back (sentencepiece drops a leading space at the start of a decode) and holds back a
    half-finished multi-byte character until the next token completes it."""

    def __init__(self, tokenizer: Any, prompt_tail: Sequence[int], lock: threading.Lock) -> None:
        self.tokenizer, self.lock = tokenizer, lock
        self.ids = list(prompt_tail)
        self.prefix, self.read = 0, len(self.ids)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        with self.lock:
            before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
            after = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""


def stop_holdback(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could be the start of a stop sequence (not shown yet)."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class _Row:
    """One request's decoding state."""

    def __init__(self, request: Request, served: "CausalLM") -> None:
        payload: GenerationPayload = request.payload
        self.request, self.options, self.served = request, payload.options, served
        self.prompt = payload.prepared
        self.generator = torch.Generator().manual_seed(payload.seed) if payload.seed is not None else None
        self.penalty = float(self.options.repetition_penalty)
        self.detok = _Detokenizer(served.tokenizer, payload.prepared.ids[-6:], served.tokenizer_lock)
        self.steps: list[TokenStep] = []
        self.text, self.shown = "", 0
        self.finish: str | None = None
        self.started = time.perf_counter()

    @property
    def sampling_key(self) -> tuple:
        return self.options.temperature, self.options.top_k, self.options.top_p

    def add(self, token_id: int, prob: float, entropy: float, alternatives: tuple[Alternative, ...]) -> None:
        """Append a token: update the text, check the stop criteria, and stream the step."""
        o, stops = self.options, self.options.stop
        before = len(self.text)
        self.text += self.detok.add(token_id)
        if stops:  # search only where a stop could end in the new text
            start = max(0, before - max(map(len, stops)) + 1)
            hits = [i for i in (self.text.find(s, start) for s in stops) if i >= 0]
            if hits:
                self.text, self.finish = self.text[:min(hits)], "stop"
        if self.finish is None and token_id in self.served.eos_ids:
            self.finish = "eos"
        elif self.finish is None and len(self.steps) + 1 >= o.max_new_tokens:
            self.finish = "length"
        visible = len(self.text) if self.finish else len(self.text) - stop_holdback(self.text, stops)
        piece, self.shown = self.text[self.shown:visible], max(self.shown, visible)
        step = TokenStep(len(self.steps), token_id, self.served.token_text(token_id), piece, prob, entropy,
                         alternatives)
        self.steps.append(step)
        self.request.emit(step)

    def result(self) -> GenerationResult:
        payload: GenerationPayload = self.request.payload
        return GenerationResult(self.served.spec.name, self.text, tuple(self.steps), self.finish or "cancelled",
                                len(self.prompt.ids), self.prompt.chat, payload.seed, self.options,
                                self.prompt.notes, time.perf_counter() - self.started)


class CausalLM:
    """A causal language model and its tokenizer, serving generation and lens requests in batches."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype, max_batch: int = 16,
                 weights: str = "fp32", compile: bool | str = False) -> None:
        self.spec, self.device, self.max_batch = spec, device, max_batch
        self.tokenizer = load_tokenizer(folder)
        self.model = pretrained("AutoModelForCausalLM", folder, dtype).to(device).eval()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        # reduced-precision Linear weights (engine.weights); bf16 on a model already in bf16 changes nothing
        self.weights = weights if weights in ("int8", "int4") or dtype == torch.float32 else "fp32"
        # one-token steps of Llama-type models skip transformers' per-layer machinery (engine.llama); built before
        # the Linear layers are converted, so that its fused q/k/v and gate/up layers are converted the same way
        self.decoder = LlamaDecoder(self.model) if llama_unsupported(self.model) is None else None
        convert, pack = None, False
        if self.weights != "fp32":
            # bf16 weights (and int8/int4's output layer) packed once for oneDNN where the CPU has bf16 units
            packed_bf16 = packs(self.weights, device, compile)
            # (the layers the step's fused ones join are converted once, by the step: use_weights below)
            apply_weights(self.model, self.weights, pack=packed_bf16,
                          skip=self.decoder.fused_layer_names() if self.decoder is not None else ())
            convert = weight_layer(self.weights, packed_bf16)
        elif apply_onednn(self.model):  # fp32 on the CPU: oneDNN's products (engine.weights.OneDNNLinear)
            convert = OneDNNLinear
            # ... through weights packed for it once (engine.weights.PackedLinear)
            pack = packs("fp32", device, compile)
        if self.decoder is not None:
            self.decoder.use_weights(self.model, convert, pack)
        self.compile_seconds = None  # how long torch.compile took at load (settings.compile), None when not compiled
        if compile and self.decoder is not None:
            try:
                mode = "max-autotune" if compile == "max-autotune" else "default"
                self.compile_seconds = self.decoder.compile(mode)
                log.info("%s: decoding step compiled in %.1f s", spec.name, self.compile_seconds)
            except Exception as e:  # no C++ compiler, an unsupported op...: the eager step still works
                self.decoder._compiled = None
                log.warning("%s: torch.compile failed (%s: %s); decoding with the eager step", spec.name,
                            type(e).__name__, str(e)[:200])
        self.nbytes = module_nbytes(self.model) + (self.decoder.extra_nbytes(self.model) if self.decoder else 0)
        self.bytes_per_token = bytes_per_token(self.model)  # what one batch-1 step reads (see engine.weights)
        config, gen = self.model.config, self.model.generation_config
        limits = [getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        self.context = min(int(n) for n in limits if n and n < 10**7) if any(limits) else 2048
        eos = gen.eos_token_id if gen is not None else None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = frozenset(i for i in [*eos, self.tokenizer.eos_token_id] if i is not None)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.tokenizer_lock = threading.Lock()  # a fast tokenizer must not be used by two threads at once
        self._token_text: dict[int, str] = {}
        self._running: list[_Row] = []  # the rows decoding now, to fail them all if the model fails
        self.peak_rows = 0  # the most rows decoded together so far (for tests and benchmarks)

    # prepare (the caller's thread) ------------------------------------------------------------------------------------
    def prepare(self, prompt: Prompt, max_new_tokens: int, chat: bool | None = None,
                system_prompt: str | None = None) -> Prepared:
        """Token ids for ``prompt`` (a text, or in chat mode a conversation: see :func:`chat_messages`): through the
        chat template in chat mode, cut from the left to fit the context."""
        name, notes = self.spec.name, []
        use_chat = (self.spec.chat and self.has_template) if chat is None else bool(chat)
        if use_chat and not self.has_template:
            raise InvalidOptionsError(f"{name} has no chat template: it is a base model that continues text. Turn "
                                      "chat mode off, or pick an instruct model.")
        if not use_chat and not isinstance(prompt, str):
            raise InvalidOptionsError("A conversation (a list of messages) needs chat mode; turn chat on, or give "
                                      "the text to continue.")
        with self.tokenizer_lock:
            if use_chat:
                messages = chat_messages(prompt, system_prompt)
                text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                ids = self.tokenizer.encode(text, add_special_tokens=False)
            else:
                ids = self.tokenizer.encode(prompt)
        if system_prompt and not use_chat:
            notes.append("The system prompt was not used: it only applies in chat mode.")
        if max_new_tokens >= self.context:
            raise InvalidOptionsError(f"max_new_tokens ({max_new_tokens}) must be less than {name}'s context of "
                                      f"{self.context} tokens, which also holds the prompt; choose at most "
                                      f"{self.context - 1}.")
        room = self.context - max_new_tokens
        if len(ids) > room:
            notes.append(f"The prompt was cut to its last {room} tokens (it had {len(ids)}): {name} reads at most "
                         f"{self.context} tokens, and {max_new_tokens} are kept for the new text.")
            ids = ids[-room:]
        if not ids:
            raise InvalidInputError("The prompt gave no tokens to read; type some text.")
        return Prepared(tuple(ids), use_chat, tuple(notes))

    def token_text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            with self.tokenizer_lock:
                # a piece of a character (byte-level BPE splits Chinese so) shows as its bytes: ‹E9›
                text = self._token_text[token_id] = token_label(self.tokenizer, token_id)
        return text

    # the worker's thread ---------------------------------------------------------------------------------------------
    def batch_key(self, payload: Any) -> Hashable:
        return None  # options are per row: any requests can share a batch

    joins = True  # requests that arrive while a batch decodes join it at its next step (see engine.worker)

    def run_batch(self, requests: list[Request], more: More = lambda room: []) -> None:
        with torch.inference_mode():
            self._decode(self._admit(requests), more)

    def _admit(self, requests: list[Request]) -> list[_Row]:
        """Lens requests are answered at once; generation requests become rows."""
        lens = [r for r in requests if isinstance(r.payload, LensPayload)]
        if lens:
            self._lens(lens)
        rows = []
        for r in requests:
            if isinstance(r.payload, GenerationPayload):
                if r.cancelled:
                    r.finish(_Row(r, self).result())
                else:
                    rows.append(_Row(r, self))
        return rows

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: Any, step: bool = False) -> torch.Tensor:
        """One forward pass on the device: input_ids (B, T) -> next-token logits (B, V) in float32. ``step``: one
        new token per row after a prefill (what :class:`~engine.llama.LlamaDecoder` does when the model allows)."""
        if step and self.decoder is not None:
            padded = not bool(mask.all())
            return self.decoder.step(input_ids[:, 0], positions[:, 0], mask if padded else None, cache)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=cache is not None, logits_to_keep=1)
        return out.logits[:, -1].float()

    def _prefill(self, prompts: list[Sequence[int]], cache: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded prompts through the model: (next-token logits (B, V), attention mask (B, L), positions (B,))."""
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        logits = self._forward(ids, mask, positions, cache)
        return logits, mask, positions[:, -1]

    def _decode(self, rows: list[_Row], more: More) -> None:
        """The decoding loop: one forward pass per step for every row, until each is done."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        logits = mask = positions = seen = None
        if rows:
            logits, mask, positions = self._prefill([r.prompt.ids for r in rows], cache)
            seen = self._seen([r.prompt.ids for r in rows])
        joinable = _plain_layers(cache)
        try:
            self._loop(rows, cache, logits, mask, positions, seen, more if joinable else None)
        except BaseException as e:  # a forward pass failed: every row still running (joined ones too) gets the error
            for row in self._running:
                row.request.fail(e)
            raise
        finally:
            self._running = []

    def _loop(self, rows: list[_Row], cache: Any, logits: torch.Tensor | None, mask: torch.Tensor | None,
              positions: torch.Tensor | None, seen: torch.Tensor | None, more: More | None) -> None:
        from transformers import DynamicCache

        while True:
            self._running = rows
            # 1. Requests that arrived meanwhile join now (lens requests are answered on the spot).
            if more is not None and len(rows) < self.max_batch:
                joined = self._admit(more(self.max_batch - len(rows)))
                if joined:
                    fresh = DynamicCache(config=self.model.config)
                    new_logits, new_mask, new_positions = self._prefill([r.prompt.ids for r in joined], fresh)
                    new_seen = self._seen([r.prompt.ids for r in joined])
                    if rows:
                        mask = _merge_caches(cache, mask, fresh, new_mask)
                        logits, positions = torch.cat([logits, new_logits]), torch.cat([positions, new_positions])
                        seen = torch.cat([seen, new_seen])
                    else:
                        cache, logits, mask, positions, seen = fresh, new_logits, new_mask, new_positions, new_seen
                    rows = rows + joined
                    self._running = rows
            if not rows:
                return
            self.peak_rows = max(self.peak_rows, len(rows))
            # 2. Pick each row's token from its own options and generator; record what the model thought.
            for row in rows:
                if row.request.cancelled:
                    row.finish = "cancelled"
            tokens, stats = self._step(rows, logits, seen)
            for i, row in enumerate(rows):
                if row.finish is None:
                    row.add(tokens[i], *stats[i])
            # 3. Finished rows leave the batch; the others take one more step.
            keep = [i for i, row in enumerate(rows) if row.finish is None]
            for row in rows:
                if row.finish is not None:
                    row.request.finish(row.result())
            if len(keep) < len(rows):
                rows = [rows[i] for i in keep]
                if not rows:
                    continue  # requests that arrived meanwhile may start a new batch at once
                index = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(index)
                mask, positions, seen = mask[index], positions[index], seen[index]
                if more is not None:
                    mask = _trim_padding(cache, mask)
            next_ids = torch.tensor([[tokens[i]] for i in keep], device=mask.device)
            seen.scatter_(1, next_ids, True)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions + 1
            logits = self._forward(next_ids, mask, positions[:, None], cache, step=True)

    def _seen(self, prompts: list[Sequence[int]]) -> torch.Tensor:
        seen = torch.zeros((len(prompts), self.vocab_size), dtype=torch.bool)
        for i, p in enumerate(prompts):
            seen[i, list(p)] = True
        return seen.to(self.device)

    def _step(self, rows: list[_Row], logits: torch.Tensor,
              seen: torch.Tensor) -> tuple[list[int], list[tuple[float, float, tuple[Alternative, ...]]]]:
        """Sample one token per row and measure the model's distribution. logits (B, V), seen (B, V)."""
        # the model's own distribution (temperature 1): its log-probabilities are the logits minus each row's norm
        norm, entropies = log_normaliser_and_entropy(logits)
        shaped = logits
        if any(r.penalty != 1 for r in rows):
            penalty = torch.tensor([[r.penalty] for r in rows], device=logits.device)
            shaped = apply_repetition_penalty(logits, seen, penalty)
        tokens = torch.empty(len(rows), dtype=torch.long, device=logits.device)
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.sampling_key, []).append(i)
        for indices in groups.values():  # rows with the same options sample together, each with its own generator
            index = torch.tensor(indices, device=logits.device)
            tokens[index] = sample_next_token(shaped[index], rows[indices[0]].options,
                                              [rows[i].generator for i in indices])
        alt_logits, alt_ids = logits.topk(ALTERNATIVES, dim=-1)
        chosen = logits.gather(1, tokens[:, None]) - norm
        token_list = tokens.tolist()
        probs, entropies = chosen.squeeze(1).exp().tolist(), entropies.tolist()
        alt_probs, alt_ids = (alt_logits - norm).exp().tolist(), alt_ids.tolist()
        stats = [(probs[i], entropies[i],
                  tuple(Alternative(t, self.token_text(t), p) for t, p in zip(alt_ids[i], alt_probs[i])))
                 for i in range(len(rows))]
        return token_list, stats

    def _lens(self, requests: list[Request]) -> None:
        """Next-token distributions for a batch of prompts, in one forward pass."""
        for r in requests:
            if r.cancelled:
                r.fail(CancelledError("Cancelled."))
        requests = [r for r in requests if not r.cancelled]
        if not requests:
            return
        try:
            logits, _, _ = self._prefill([r.payload.prepared.ids for r in requests], None)
            for r, row in zip(requests, logits):
                r.finish(self._distribution(r.payload, row))
        except Exception as e:  # fail these requests only: a batch they joined keeps decoding
            log.exception("next-token lens failed")
            for r in requests:
                r.fail(e)

    def _distribution(self, payload: LensPayload, logits: torch.Tensor) -> NextTokenDistribution:
        # float64 from the model's float32 logits: a float32 softmax over SmolLM2's 49,152 tokens summed to
        # 1 + 9e-6 with AVX-512 and 1 + 2e-5 on an AVX2-only CPU (the normaliser's rounding depends on the kernel's
        # summation order); in float64 it is within ~1e-12 of 1 in any order, on every machine.
        o, row = payload.options, logits[None].double()
        logp = torch.log_softmax(row, dim=-1)
        reshaped = reshaped_distribution(row, o)
        ids = logp[0].topk(payload.show).indices.tolist()
        probs = logp.exp()[0].cpu().numpy()
        shaped = reshaped[0].cpu().numpy()
        top = tuple(TokenProb(t, self.token_text(t), float(probs[t]), float(shaped[t])) for t in ids)
        with np.errstate(divide="ignore", invalid="ignore"):
            shaped_entropy = float(-np.sum(np.where(shaped > 0, shaped * np.log2(shaped), 0.0)))
        # the mass outside the shown tokens, summed rather than 1 - sum(top): never negative, and exactly 0 when
        # top-k keeps no more tokens than are shown
        rest = np.ones(len(probs), dtype=bool)
        rest[ids] = False
        return NextTokenDistribution(
            self.spec.name, len(payload.prepared.ids), top, float(probs[rest].sum()), float(shaped[rest].sum()),
            float(entropy_bits(logp)[0]), shaped_entropy, o.temperature, o.top_k, o.top_p, probs, shaped,
            payload.prepared.notes)


def _plain_layers(cache: Any) -> bool:
    """Joining and trimming edit the cache's tensors directly, which is only right for plain full-attention layers
    (not sliding windows, not quantised or offloaded caches)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _merge_caches(cache: Any, mask: torch.Tensor, new: Any, new_mask: torch.Tensor) -> torch.Tensor:
    """Append ``new``'s rows to ``cache`` (both left-padded to the same length); returns the merged mask (B, L).
    Cache tensors are (batch, heads, tokens, head_dim); padded slots are zeros, masked out."""
    width = max(mask.shape[1], new_mask.shape[1])
    for layer, other in zip(cache.layers, new.layers):
        layer.keys = torch.cat([_left_pad(layer.keys, width, 2), _left_pad(other.keys, width, 2)])
        layer.values = torch.cat([_left_pad(layer.values, width, 2), _left_pad(other.values, width, 2)])
    return torch.cat([_left_pad(mask, width, 1), _left_pad(new_mask, width, 1)])


def _trim_padding(cache: Any, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row (left behind by rows that left): less attention work."""
    used = mask.any(0).nonzero()
    start = int(used[0]) if len(used) else 0
    if start == 0:
        return mask
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
    return mask[:, start:]


def load(spec: ModelSpec, files: Path, engine: "Engine") -> CausalLM:
    device = engine.policy.device
    return CausalLM(spec, files, device, engine.policy.dtype, engine.settings.max_batch,
                    resolve_weights(engine.settings.weights, device.split(":")[0]), engine.settings.compile)


# --- the public API ---------------------------------------------------------------------------------------------------
CHAT_ROLES = ("system", "user", "assistant")


def chat_messages(prompt: Prompt, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation a chat template reads: ``prompt`` is the user's message, or a whole conversation as a list
    of ``{"role": "system" | "user" | "assistant", "content": text}`` (earlier turns included); ``system_prompt``,
    when given, goes first."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + turns


def _check_prompt(engine: "Engine", prompt: Any, system_prompt: Any) -> None:
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise InvalidInputError("The conversation is empty; give at least one message.")
        for m in prompt:
            if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES or not isinstance(m.get("content"), str):
                raise InvalidInputError(f"Each message must be {{'role': one of {', '.join(CHAT_ROLES)}, "
                                        f"'content': text}}; got {str(m)[:80]!r}.")
        check_text("\n".join(m["content"] for m in prompt), "conversation", engine.settings.max_chars)
    else:
        check_text(prompt, "prompt", engine.settings.max_chars)
    if system_prompt is not None and system_prompt != "":
        check_text(system_prompt, "system prompt", engine.settings.max_chars)


def _submit(engine: "Engine", prompt: Prompt, model: str | None, options: GenerationOptions | None,
            overrides: dict[str, Any], chat: bool | None, system_prompt: str | None) -> Request:
    options = make_options(options, **overrides)
    _check_prompt(engine, prompt, system_prompt)
    spec = engine.spec(TASK, model)
    served: CausalLM = engine.served(TASK, spec.name)
    prepared = served.prepare(prompt, options.max_new_tokens, chat, system_prompt or None)
    seed = options.seed if options.seed is not None else (None if options.greedy else secrets.randbits(31))
    request = engine.submit(TASK, spec.name, GenerationPayload(prepared, options, seed))
    return request


def generate(engine: "Engine", prompt: Prompt, model: str | None = None, options: GenerationOptions | None = None, *,
             chat: bool | None = None, system_prompt: str | None = None, **overrides: Any) -> GenerationResult:
    """Generate a continuation of ``prompt`` (or, in chat mode, the assistant's reply to it; in chat mode
    ``prompt`` may also be a whole conversation, a list of ``{"role", "content"}`` messages: see
    :func:`chat_messages`).

    ``overrides`` are :class:`GenerationOptions` fields: ``max_new_tokens``, ``temperature`` (0 = greedy),
    ``top_k``, ``top_p``, ``repetition_penalty``, ``stop`` (a string or a list), ``seed``. ``chat``: apply the
    model's chat template with ``system_prompt`` (None = yes for instruct models). Waits for the whole text; see
    :func:`stream`.
    """
    return _submit(engine, prompt, model, options, overrides, chat, system_prompt).result()


class GenerationStream:
    """The steps of one generation as they are computed: ``for step in stream: print(step.text, end="")``.

    ``id`` is the engine's request id (``engine.cancel(id)`` stops it from anywhere); ``result`` holds the
    :class:`GenerationResult` once the iteration ends. Closing the stream early (``close()``, ``break`` in a ``with``
    block, or garbage collection) cancels the request, which stops its compute at the next step.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.id = request.id
        self.result: GenerationResult | None = None
        self._events = request.events()

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> TokenStep:
        try:
            return next(self._events)
        except StopIteration:
            self.result = self.request.result()
            raise

    def cancel(self) -> None:
        self.request.cancel()

    def close(self) -> None:
        self._events.close()  # cancels the request when it has not finished

    def __enter__(self) -> "GenerationStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stream(engine: "Engine", prompt: Prompt, model: str | None = None, options: GenerationOptions | None = None, *,
           chat: bool | None = None, system_prompt: str | None = None, **overrides: Any) -> GenerationStream:
    """Like :func:`generate`, but yields each :class:`TokenStep` as soon as it is computed."""
    return GenerationStream(_submit(engine, prompt, model, options, overrides, chat, system_prompt))


def next_token(engine: "Engine", prompt: str, model: str | None = None, top_k: int = 10, temperature: float = 1.0,
               top_p: float = 1.0, *, chat: bool = False, system_prompt: str | None = None,
               show: int | None = None) -> NextTokenDistribution:
    """The model's distribution over the next token after ``prompt``: the ``show`` (default ``top_k``, or 10 when
    top-k is off) most likely tokens with their probabilities, the mass outside them, and the same distribution after
    ``temperature``, ``top_k`` and ``top_p`` reshape it (as :func:`generate` would sample from it)."""
    options = make_options(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=1)
    show = _whole("show", show) if show is not None else (options.top_k or 10)
    if not 1 <= show <= MAX_TOP_K:
        raise InvalidOptionsError(f"show must be between 1 and {MAX_TOP_K}, got {show}.")
    _check_prompt(engine, prompt, system_prompt)
    spec = engine.spec(TASK, model)
    served: CausalLM = engine.served(TASK, spec.name)
    prepared = served.prepare(prompt, 1, chat, system_prompt or None)
    return engine.submit(TASK, spec.name, LensPayload(prepared, options, min(show, served.vocab_size))).result()
