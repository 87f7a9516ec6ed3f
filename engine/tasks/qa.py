"""Extractive question answering (BERT-type span prediction), and the instruct LLM as a generative alternative.

An extractive model reads ``[CLS] question [SEP] context [SEP]`` and gives every token two logits: how likely the
answer starts there, and how likely it ends there. transformers 5 has no question-answering pipeline, so the span
logic is here:

1. prepare: the fast tokenizer cuts a long context into overlapping windows of :data:`MAX_LENGTH` tokens
   (:data:`STRIDE` tokens shared by neighbours) and gives each token its character offsets in the context;
2. forward: the windows of every request in the batch run together, length-sorted, :data:`BATCH` at a time;
3. postprocess: in each window a softmax over the context tokens (and ``[CLS]``) turns the logits into start and
   end probabilities; a span's score is ``p_start * p_end`` for ``end >= start`` and at most ``max_answer_tokens``
   tokens; the best spans of all windows are merged (a span seen by two windows keeps its best score) and mapped
   back to characters, so ``context[answer.start:answer.end] == answer.text`` whichever window it came from.

SQuAD 2.0 models also point at ``[CLS]`` when the context holds no answer. As in the official SQuAD 2.0
evaluation, the answer is "no answer" when the null logit (``[CLS]`` as start and end, the lowest over the windows)
beats the best span's logit by more than ``no_answer_threshold``.

The generative alternative (``model="llm"``) asks the instruct LLM to answer from the context (greedy, short) and
says whether its answer occurs in the context, with the span where it does. It also runs when the specialist model
is not on this machine and cannot be downloaded, and the answer's notes say so.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import CancelledError, InputTooLargeError, InvalidInputError, InvalidOptionsError, ModelUnavailableError
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..weights import apply_onednn
from ..worker import Request
from .common import check_text

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "question-answering"
MAX_LENGTH = 384  # tokens per window (question, context and special tokens), as SQuAD models were trained
STRIDE = 128  # tokens of context that consecutive windows share, so an answer is never cut in two
BATCH = 32  # windows per forward pass
MAX_QUESTION_CHARS = 1000  # longer "questions" are pasted contexts
MAX_TOP_K = 20
MAX_ANSWER_TOKENS = 512
LLM = "llm"  # model name of the generative alternative: the default instruct LLM (text-generation's default)
LLM_MAX_NEW_TOKENS = 40  # an answer is a few words; a sentence at most
# Chosen among four wordings on five questions: with the reply started as "Answer:", SmolLM2-135M answers in a few
# words ("1889", "Paris", "3.7"); without it, in a sentence of its own that is rarely in the context.
LLM_SYSTEM = ("You answer questions about a text. Use only the text. Reply with the shortest exact answer, copied "
              "from the text, without explanation.")
LLM_PROMPT = "Text:\n{context}\n\nQuestion: {question}"
LLM_REPLY = "Answer:"  # the start of the assistant's reply
SQUAD2_MARKERS = ("squad2", "squadv2", "squad_v2", "squad-v2")  # names of models trained to say "no answer"


@dataclasses.dataclass(frozen=True)
class Span:
    """One candidate answer: ``context[start:end] == text``; ``score`` is ``p_start * p_end`` in its window."""

    text: str
    score: float
    start: int
    end: int
    window: int  # which window (0-based) scored it best


@dataclasses.dataclass(frozen=True)
class Answer:
    """The answer to one question.

    ``start``/``end`` are character offsets into the context as given (``context[start:end] == text``); they are
    ``None`` when the answer is no span of the context: "no answer", or a generated answer not found in it.
    ``candidates`` are the top-k spans, best first (empty for the generative alternative). ``null_score`` is the
    probability the model gives to "no answer" (``[CLS]``). ``in_context`` says, for a generated answer, whether
    it occurs in the context (exactly, or after normalising case, spaces and end punctuation).
    """

    text: str
    score: float
    start: int | None
    end: int | None
    candidates: tuple[Span, ...]
    has_answer: bool
    model: str
    notes: tuple[str, ...] = ()
    null_score: float | None = None
    windows: int = 1
    generative: bool = False
    in_context: bool | None = None


@dataclasses.dataclass(frozen=True)
class QAOptions:
    """Per-call options, checked in one place (:meth:`verify`)."""

    top_k: int = 3
    max_answer_tokens: int = 30
    no_answer_threshold: float | None = None  # None: 0.0 for SQuAD 2.0 models, never "no answer" for the others

    def verify(self) -> "QAOptions":
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidOptionsError(f"top_k must be between 1 and {MAX_TOP_K}, got {self.top_k}.")
        if not 1 <= self.max_answer_tokens <= MAX_ANSWER_TOKENS:
            raise InvalidOptionsError(f"max_answer_tokens must be between 1 and {MAX_ANSWER_TOKENS}, "
                                      f"got {self.max_answer_tokens}.")
        if self.no_answer_threshold is not None and math.isnan(self.no_answer_threshold):
            raise InvalidOptionsError("no_answer_threshold must be a number (or None for the model's default).")
        return self


@dataclasses.dataclass(frozen=True)
class QAPayload:
    """What one request carries: (question, context) pairs sharing one set of options."""

    pairs: tuple[tuple[str, str], ...]
    options: QAOptions


def can_say_no_answer(spec: ModelSpec) -> bool:
    """True for models trained on SQuAD 2.0 (recognised by their name or source), which may answer "no answer"."""
    names = f"{spec.name} {spec.location}".lower()
    return any(marker in names for marker in SQUAD2_MARKERS)


# --- the served model --------------------------------------------------------------------------------------------


class ExtractiveQA:
    """An extractive QA model and its fast tokenizer, serving batches of (question, context) pairs."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.spec, self.device = spec, device
        self.tokenizer = load_tokenizer(folder)
        if not self.tokenizer.is_fast:
            raise InvalidOptionsError(f"Model {spec.name!r} has no fast tokenizer (tokenizer.json), which question "
                                      "answering needs for character offsets.")
        self.model = pretrained("AutoModelForQuestionAnswering", folder, dtype, use_safetensors=None)
        self.model.to(device).eval()
        apply_onednn(self.model)  # fp32 on the CPU: oneDNN's products (engine.weights.OneDNNLinear)
        self.nbytes = module_nbytes(self.model)
        self.max_length = min(MAX_LENGTH, self.tokenizer.model_max_length)
        self.stride = min(STRIDE, self.max_length // 3)
        self.question_budget = self.max_length // 3  # tokens; the rest of a window is context
        self.question_first = self.tokenizer.padding_side == "right"  # XLNet-style models put the context first
        self.abstains = can_say_no_answer(spec)
        self.overhead_tokens = self._calibrate()

    def _calibrate(self) -> float:
        """The fixed cost of one forward pass on this device, in tokens' worth of compute: two single windows of
        different lengths, each the best of 3, give the cost per token and what is left over. See
        :func:`padding_aware_batches`, which batches only where that overhead pays for the padding."""
        import time

        lengths = (32, min(160, self.max_length))
        cost = []
        with torch.inference_mode():
            for n in lengths:
                ids = torch.full((1, n), self.tokenizer.pad_token_id or 0, dtype=torch.long, device=self.device)
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
                    if self.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    best = min(best, time.perf_counter() - t0)
                cost.append(best)
        per_token = max((cost[1] - cost[0]) / (lengths[1] - lengths[0]), 1e-9)
        overhead = max(0.0, cost[0] - lengths[0] * per_token) / per_token
        log.info("%s: one forward pass costs %.0f tokens' worth of overhead on %s", self.spec.name, overhead,
                 self.device)
        return overhead

    def batch_key(self, payload: QAPayload) -> Hashable:
        return None  # options only matter after the forward pass: any requests can share a batch

    def run_batch(self, requests: list[Request]) -> None:
        live = [r for r in requests if self._check_questions(r)]
        pairs = [(r, q, c) for r in live for q, c in r.payload.pairs]
        if not pairs:
            return
        questions, contexts = [p[1] for p in pairs], [p[2] for p in pairs]
        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        enc = self.tokenizer(first, second, truncation="only_second" if self.question_first else "only_first",
                             max_length=self.max_length, stride=self.stride, return_overflowing_tokens=True,
                             return_offsets_mapping=True, padding=False)
        logits = self._forward(enc, live)
        windows: list[list[int]] = [[] for _ in pairs]
        for feature, pair in enumerate(enc["overflow_to_sample_mapping"]):
            windows[pair].append(feature)
        results: dict[int, list[Answer]] = {id(r): [] for r in live}
        for pair, (request, _, context) in enumerate(pairs):
            if logits is None or request.cancelled:
                continue
            feats = [(enc.sequence_ids(f), enc["offset_mapping"][f], enc["input_ids"][f], *logits[f])
                     for f in windows[pair]]
            results[id(request)].append(self._postprocess(context, feats, request.payload.options))
        for request in live:
            if request.cancelled or logits is None:
                request.fail(CancelledError("Cancelled."))
            else:
                request.finish(tuple(results[id(request)]))

    def _check_questions(self, request: Request) -> bool:
        """Fail a request whose question leaves too little room for the context in a window."""
        for question, _ in request.payload.pairs:
            n = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
            if n > self.question_budget:
                request.fail(InvalidInputError(f"The question is {n} tokens long; {self.spec.name} reads questions "
                                               f"of at most {self.question_budget} tokens. Shorten it."))
                return False
        return True

    def _forward(self, enc, requests: list[Request]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Start and end logits of every window, each ``(tokens,)`` float32; None when all were cancelled."""
        names = [n for n in self.tokenizer.model_input_names if n in enc]
        ids = enc["input_ids"]
        out: list = [None] * len(ids)
        batches = padding_aware_batches([len(i) for i in ids], BATCH, self.overhead_tokens)
        for done, idx in enumerate(batches):
            if all(r.cancelled for r in requests):
                return None
            batch = self.tokenizer.pad({n: [enc[n][i] for i in idx] for n in names}, return_tensors="pt")
            with torch.inference_mode():
                output = self.model(**{n: batch[n].to(self.device) for n in names})
            start = output.start_logits.float().cpu().numpy()  # (batch, tokens)
            end = output.end_logits.float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = (start[row, :len(ids[i])], end[row, :len(ids[i])])
            for r in requests:
                r.report((done + 1) / len(batches), f"read {sum(map(len, batches[:done + 1]))} of {len(ids)} windows")
        return out

    def _postprocess(self, context: str, windows: list, options: QAOptions) -> Answer:
        """Spans of all windows of one context -> the answer. Each window is (sequence_ids, offsets, input_ids,
        start_logits, end_logits)."""
        best: dict[tuple[int, int], tuple[float, float, int]] = {}  # (char start, char end) -> (score, logit, window)
        null_logit, null_prob = math.inf, 1.0
        context_id = 1 if self.question_first else 0
        cls_id = self.tokenizer.cls_token_id
        for w, (seq_ids, offsets, input_ids, start_logits, end_logits) in enumerate(windows):
            tokens = np.array([s == context_id for s in seq_ids])
            cls = [i for i, t in enumerate(input_ids) if t == cls_id][:1]
            allowed = tokens.copy()
            allowed[cls] = True
            p_start, p_end = _masked_softmax(start_logits, allowed), _masked_softmax(end_logits, allowed)
            if cls:
                logit = float(start_logits[cls[0]] + end_logits[cls[0]])
                if logit < null_logit:  # the window most sure that there is an answer speaks for "no answer"
                    null_logit, null_prob = logit, float(p_start[cls[0]] * p_end[cls[0]])
            for s, e, score in top_spans(p_start, p_end, tokens, options.max_answer_tokens, options.top_k):
                span = (offsets[s][0], offsets[e][1])
                if span not in best or score > best[span][0]:
                    best[span] = (score, float(start_logits[s] + end_logits[e]), w)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:options.top_k]
        candidates = tuple(Span(context[a:b], score, a, b, w) for (a, b), (score, _, w) in ranked)
        notes = []
        if len(windows) > 1:
            notes.append(f"The context was read in {len(windows)} overlapping windows of {self.max_length} tokens "
                         f"({self.stride} shared).")
        threshold = options.no_answer_threshold
        if threshold is None and self.abstains:
            threshold = 0.0
        has_answer = bool(candidates)
        if has_answer and threshold is not None and math.isfinite(null_logit):
            margin = null_logit - ranked[0][1][1]
            if margin > threshold:
                has_answer = False
                notes.append(f"No answer: the model's no-answer logit beats its best span's by {margin:.2f} "
                             f"(threshold {threshold:g}).")
        null_score = null_prob if math.isfinite(null_logit) else None
        if not has_answer:
            return Answer("", null_score if null_score is not None else 0.0, None, None, candidates, False,
                          self.spec.name, tuple(notes), null_score, len(windows))
        top = candidates[0]
        return Answer(top.text, top.score, top.start, top.end, candidates, True, self.spec.name, tuple(notes),
                      null_score, len(windows))


def padding_aware_batches(lengths: Sequence[int], max_batch: int, overhead_tokens: float) -> list[list[int]]:
    """Indices of windows in length-sorted batches, each grown only while it costs no more than running its windows
    one at a time: adding a window of ``n`` tokens to a batch of ``k`` padded to ``m`` pads the others by
    ``k * (n - m)`` tokens, which one forward pass fewer (``overhead_tokens``, measured on the device) must pay for.
    Padding is the only compute a batch adds, so a batch never loses to one-at-a-time (equal lengths always batch;
    an overhead of 0 batches nothing else); whatever batching saves beyond the overhead is a gain on top."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if last is not None and len(last) < max_batch:
            padded = max(lengths[j] for j in last)
            budget = overhead_tokens * len(last)  # the passes saved: one per window joined so far
            spent = sum(max(lengths[i], padded) - lengths[j] for j in last)  # all padding in the batch
            if spent <= budget:
                last.append(i)
                continue
        batches.append([i])
    return batches


def _masked_softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over the ``allowed`` positions; 0 elsewhere. ``(tokens,) -> (tokens,)``."""
    x = np.where(allowed, logits.astype(np.float64), -np.inf)
    x = np.exp(x - x[allowed].max()) if allowed.any() else np.zeros_like(x)
    return x / x.sum() if x.sum() > 0 else x


def top_spans(p_start: np.ndarray, p_end: np.ndarray, allowed: np.ndarray, max_tokens: int,
              k: int) -> list[tuple[int, int, float]]:
    """The ``k`` best ``(start, end, p_start[start] * p_end[end])`` with both ends ``allowed``,
    ``start <= end < start + max_tokens``, best first."""
    idx = np.flatnonzero(allowed)
    if idx.size == 0:
        return []
    scores = np.outer(p_start[idx], p_end[idx])  # (n, n): row = start, column = end
    gap = idx[None, :] - idx[:, None]  # end token - start token
    scores[(gap < 0) | (gap >= max_tokens)] = 0.0
    flat = scores.ravel()
    k = min(k, int(np.count_nonzero(flat)) or 1)
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    return [(int(idx[t // len(idx)]), int(idx[t % len(idx)]), float(flat[t])) for t in top if flat[t] > 0]


def load(spec: ModelSpec, files: Path, engine: "Engine") -> ExtractiveQA:
    return ExtractiveQA(spec, files, engine.policy.device, engine.policy.encoder_dtype)


# --- the public API ----------------------------------------------------------------------------------------------


def answer(engine: "Engine", question: str, context: str, model: str | None = None, *, top_k: int = 3,
           max_answer_tokens: int = 30, no_answer_threshold: float | None = None) -> Answer:
    """Answer ``question`` from ``context``: ``engine.answer("When?", "It was completed in 1889.").text``.

    ``model`` is a registered question-answering model (default: the task's default) or ``"llm"`` for the
    generative alternative. ``top_k`` candidate spans come back in ``candidates``; spans are at most
    ``max_answer_tokens`` tokens. ``no_answer_threshold`` (logits) makes any model answer "no answer" when its
    no-answer logit beats the best span's by more than it; None uses 0 for SQuAD 2.0 models and never says "no
    answer" with the others. When the specialist is not on this machine and cannot be fetched, the instruct LLM
    answers and ``notes`` say so.
    """
    return answer_batch(engine, [(question, context)], model, top_k=top_k, max_answer_tokens=max_answer_tokens,
                        no_answer_threshold=no_answer_threshold)[0]


def answer_batch(engine: "Engine", pairs: Sequence[tuple[str, str]], model: str | None = None, *, top_k: int = 3,
                 max_answer_tokens: int = 30, no_answer_threshold: float | None = None) -> list[Answer]:
    """Answer many ``(question, context)`` pairs in one request: their windows share forward passes."""
    if not pairs:
        raise InvalidInputError("Give at least one (question, context) pair.")
    checked = tuple(_check_pair(engine, q, c) for q, c in pairs)
    options = QAOptions(int(top_k), int(max_answer_tokens), no_answer_threshold).verify()
    if model == LLM:
        return [_llm_answer(engine, q, c) for q, c in checked]
    spec = engine.spec(TASK, model)
    try:
        return list(engine.run(TASK, spec.name, QAPayload(checked, options)))
    except ModelUnavailableError as e:
        from ..training.bundled_qa import how_measured, offline_default

        bundled = offline_default(engine)  # MiniLM fine-tuned on the bundled questions, when it beat the LLM
        if bundled is not None and bundled.name != spec.name:
            log.info("%s unavailable, answering with %s: %s", spec.name, bundled.name, e)
            why = (f"{spec.name} is not on this machine and could not be downloaded, so the offline default "
                   f"answered instead. {how_measured(bundled)}")
            answers = engine.run(TASK, bundled.name, QAPayload(checked, options))
            return [dataclasses.replace(a, notes=(why,) + a.notes) for a in answers]
        log.info("%s unavailable, answering with the instruct LLM: %s", spec.name, e)
        why = (f"{spec.name} is not on this machine and could not be downloaded, so the instruct LLM answered "
               "instead (generative, not extractive).")
        return [_llm_answer(engine, q, c, notes=(why,)) for q, c in checked]


def _check_pair(engine: "Engine", question: str, context: str) -> tuple[str, str]:
    question = check_text(question, "question", min(MAX_QUESTION_CHARS, engine.settings.max_chars))
    check_text(context, "context", engine.settings.max_chars)
    return question, context  # the context as given: answer offsets index into exactly this string


# --- the generative alternative ----------------------------------------------------------------------------------


def _llm_answer(engine: "Engine", question: str, context: str, notes: tuple[str, ...] = ()) -> Answer:
    """The instruct LLM answers from the context (greedy, short); the answer is looked up in the context."""
    from .generation import TASK as GENERATION, generate

    spec = engine.spec(GENERATION)  # the default instruct LLM
    served = engine.served(GENERATION, spec.name)
    user = LLM_PROMPT.format(context=context, question=question)
    if spec.chat and served.has_template:  # the reply starts with "Answer:", which keeps it to a few words
        with served.tokenizer_lock:
            prompt = served.tokenizer.apply_chat_template(
                [{"role": "system", "content": LLM_SYSTEM}, {"role": "user", "content": user}], tokenize=False,
                add_generation_prompt=True) + LLM_REPLY
    else:
        prompt = f"{LLM_SYSTEM}\n\n{user}\n{LLM_REPLY}"
    if len(prompt) > engine.settings.max_chars:
        raise InputTooLargeError(f"With the instructions around it, the context is {len(prompt):,} characters; the "
                                 f"instruct LLM reads at most {engine.settings.max_chars:,}. Shorten the context.")
    result = generate(engine, prompt, model=spec.name, chat=False, max_new_tokens=LLM_MAX_NEW_TOKENS,
                      temperature=0, repetition_penalty=1.0)
    text = result.text.strip()
    span = find_in_context(text, context)
    # confidence: the model's mean per-token probability of its own answer (the end-of-turn token left out)
    steps = result.tokens[:-1] if result.finish_reason == "eos" else result.tokens
    score = math.exp(sum(math.log(max(s.prob, 1e-12)) for s in steps) / len(steps)) if steps and text else 0.0
    notes = notes + result.notes + (
        (f"Generated by {result.model}; the answer occurs in the context (characters {span[0]}–{span[1]}).",)
        if span else (f"Generated by {result.model}; the answer does not occur in the context as written: "
                      "check it against the context.",) if text else (f"{result.model} gave no answer.",))
    if result.finish_reason == "length":
        notes += (f"The answer was cut at {LLM_MAX_NEW_TOKENS} tokens.",)
    return Answer(text=context[span[0]:span[1]] if span else text, score=score,
                  start=span[0] if span else None, end=span[1] if span else None, candidates=(),
                  has_answer=bool(text), model=result.model, notes=notes, generative=True,
                  in_context=span is not None)


_TRIM = " \t\r\n\"'“”‘’«».,;:!?"


def _normalised(text: str) -> tuple[str, list[int]]:
    """Casefolded text with whitespace runs collapsed to one space, and for each output character the index of
    the input character it came from."""
    out, where = [], []
    for i, char in enumerate(text):
        if char.isspace():
            if out and out[-1] == " ":
                continue
            char = " "
        for folded in char.casefold():
            out.append(folded)
            where.append(i)
    return "".join(out), where


def find_in_context(answer: str, context: str) -> tuple[int, int] | None:
    """Where ``answer`` occurs in ``context`` as ``(start, end)`` character offsets: exactly, else ignoring case,
    runs of whitespace, and quotes or punctuation at the ends of the answer. None when it does not occur."""
    answer = answer.strip()
    if not answer:
        return None
    at = context.find(answer)
    if at >= 0:
        return at, at + len(answer)
    core = answer.strip(_TRIM)
    if not core:
        return None
    haystack, where = _normalised(context)
    needle, _ = _normalised(core)
    needle = needle.strip()
    match = re.search(re.escape(needle), haystack)
    if match is None:
        return None
    return where[match.start()], where[match.end() - 1] + 1
