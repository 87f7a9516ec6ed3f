"""Sentiment classification with a sequence classifier (BERT-type), and zero-shot by the instruct LLM.

A sequence classifier reads the whole text and gives one logit per label; a softmax turns them into the label
distribution (:class:`Classification`). Texts that arrive together, from one batch request or from several
requests the worker gathered, run length-sorted, :data:`BATCH` at a time (prepare on the CPU, forward on the
device, postprocess to plain Python).

Which words pushed the prediction (:func:`explain`) is measured by occlusion: drop each word in turn, classify
every variant in the same batch, and report how much the predicted label's probability falls without it.

The generative alternative (``model="llm"``) scores the label words: after a chat-template prompt that asks for
one of them and the start of the reply (``Sentiment:``), the instruct LLM's probability of each label word as the
next word (``positive``, ``Positive``, with or without a leading space) is summed per label and renormalised over the
labels. No free text is parsed; ``notes`` say how much probability went to the label words at all. It also runs
when the specialist is not on this machine and cannot be downloaded, and ``notes`` say so.

Batch helpers read texts from lines or from a CSV column and write the results back as CSV.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import CancelledError, InputTooLargeError, InvalidInputError, ModelUnavailableError
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..weights import apply_onednn
from ..worker import Progress, Request
from .common import check_text, length_sorted_batches

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "sentiment"
BATCH = 32  # texts per forward pass
MAX_LENGTH = 512  # tokens a classifier reads; longer texts are cut (and the result says so)
MAX_TEXTS = 10_000  # texts in one batch request
MAX_EXPLAIN_WORDS = 256  # occlusion classifies one variant per word
LLM = "llm"  # model name of the generative alternative: the default instruct LLM (text-generation's default)
LLM_LABELS = ("negative", "neutral", "positive")
LLM_BATCH = 16  # prompts per forward pass of the LLM
LLM_MIN_PREFIX_PROB = 1e-4  # a label spelling of several tokens whose start is less likely than this counts as 0
# The prompt, and the reply's first word: chosen on a dozen labelled sentences among five wordings (this one got every
# clearly positive or negative one right with SmolLM2-135M; no wording made that model recognise neutral text well).
LLM_SYSTEM = "You classify the sentiment of a text as {choices}. Answer with one word."
LLM_PROMPT = "Text: {text}"
LLM_REPLY = "Sentiment:"  # the start of the assistant's reply; the label word comes next
WORD = re.compile(r"\w+(?:['’-]\w+)*")  # words (with inner apostrophes and hyphens); punctuation is no word


@dataclasses.dataclass(frozen=True)
class Classification:
    """One text's label distribution (label -> probability, summing to 1, in the model's label order).

    An empty text in a batch is kept in its place, unclassified: ``label`` "" and an empty ``distribution``.
    """

    text: str
    label: str
    score: float
    distribution: dict[str, float]
    model: str
    notes: tuple[str, ...] = ()
    generative: bool = False


@dataclasses.dataclass(frozen=True)
class Batch:
    """Many texts' classifications, in input order."""

    results: tuple[Classification, ...]
    model: str
    labels: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many texts got each label (every label, in the model's order; unclassified ones not counted)."""
        counts = dict.fromkeys(self.labels, 0)
        for r in self.results:
            if r.label:
                counts[r.label] = counts.get(r.label, 0) + 1
        return counts

    def rows(self) -> list[list]:
        """``[row, text, label, score]`` per text; rows count from 1, in input order."""
        return [[i, r.text, r.label, round(r.score, 4) if r.label else None]
                for i, r in enumerate(self.results, start=1)]

    def to_csv(self) -> str:
        """The rows as CSV, with a header and one probability column per label."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["row", "text", "label", "score", *(f"p_{label}" for label in self.labels)])
        for i, r in enumerate(self.results, start=1):
            probs = [f"{r.distribution[label]:.6f}" if label in r.distribution else "" for label in self.labels]
            writer.writerow([i, r.text, r.label, f"{r.score:.6f}" if r.label else "", *probs])
        return out.getvalue()


@dataclasses.dataclass(frozen=True)
class WordImportance:
    """How much the predicted label's probability falls when the word ``text[start:end]`` is dropped."""

    word: str
    start: int
    end: int
    importance: float  # p(label | text) - p(label | text without the word); > 0: the word pushed for the label


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The prediction for ``text`` and one importance per word, by occlusion."""

    text: str
    label: str
    score: float
    distribution: dict[str, float]
    words: tuple[WordImportance, ...]
    model: str
    notes: tuple[str, ...] = ()

    def highlights(self) -> list[tuple[str, float | None]]:
        """The whole text as ``(piece, importance or None)``, importances scaled to [-1, 1] (for highlighting)."""
        scale = max((abs(w.importance) for w in self.words), default=0.0) or 1.0
        pieces, at = [], 0
        for w in self.words:
            if w.start > at:
                pieces.append((self.text[at:w.start], None))
            pieces.append((w.word, round(w.importance / scale, 4)))
            at = w.end
        if at < len(self.text):
            pieces.append((self.text[at:], None))
        return pieces


# --- the served model --------------------------------------------------------------------------------------------


class SequenceClassifier:
    """A sequence-classification model and its tokenizer, serving batches of texts."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.spec, self.device = spec, device
        self.tokenizer = load_tokenizer(folder)
        self.model = pretrained("AutoModelForSequenceClassification", folder, dtype, use_safetensors=None)
        self.model.to(device).eval()
        apply_onednn(self.model)  # fp32 on the CPU: oneDNN's products (engine.weights.OneDNNLinear)
        self.nbytes = module_nbytes(self.model)
        self.max_length = min(MAX_LENGTH, self.tokenizer.model_max_length)
        config_labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        generic = all(re.fullmatch(r"LABEL_\d+", label) for label in config_labels)
        self.labels = tuple(spec.labels) if generic and len(spec.labels) == len(config_labels) else tuple(config_labels)

    def batch_key(self, payload: tuple[str, ...]) -> Hashable:
        return None  # any texts can share a batch

    def run_batch(self, requests: list[Request]) -> None:
        texts = [t for r in requests for t in r.payload]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        probs = np.empty((len(texts), len(self.labels)), np.float32)
        batches = length_sorted_batches(range(len(texts)), lambda i: lengths[i], BATCH)
        for done, idx in enumerate(batches):
            if all(r.cancelled for r in requests):
                break
            probs[idx] = self._classify([texts[i] for i in idx])
            for r in requests:
                r.report((done + 1) / len(batches), f"classified {min((done + 1) * BATCH, len(texts))} of "
                                                    f"{len(texts)} texts")
        start = 0
        for r in requests:
            n = len(r.payload)
            if r.cancelled:
                r.fail(CancelledError("Cancelled."))
            else:
                r.finish(tuple(self._result(texts[i], probs[i], lengths[i]) for i in range(start, start + n)))
            start += n

    def _classify(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**enc.to(self.device)).logits  # (batch, labels)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def _result(self, text: str, probs: np.ndarray, n_tokens: int) -> Classification:
        distribution = {label: float(p) for label, p in zip(self.labels, probs)}
        best = int(np.argmax(probs))
        notes = (f"The text is {n_tokens} tokens long; {self.spec.name} read the first {self.max_length}.",) \
            if n_tokens > self.max_length else ()
        return Classification(text, self.labels[best], float(probs[best]), distribution, self.spec.name, notes)


def load(spec: ModelSpec, files: Path, engine: "Engine") -> SequenceClassifier:
    return SequenceClassifier(spec, files, engine.policy.device, engine.policy.encoder_dtype)


# --- the public API ----------------------------------------------------------------------------------------------


def classify(engine: "Engine", text: str | Sequence[str], model: str | None = None,
             progress: Progress | None = None) -> Classification | list[Classification]:
    """Classify one text (-> :class:`Classification`) or many (-> a list, in order):
    ``engine.classify("I loved it").distribution``.

    ``model`` is a registered sentiment model (default: the task's default) or ``"llm"`` for zero-shot by the
    instruct LLM. When the specialist is not on this machine and cannot be fetched, the LLM answers and ``notes``
    say so.
    """
    if isinstance(text, (list, tuple)):
        return list(classify_batch(engine, text, model, progress).results)
    return classify_batch(engine, [check_text(text, "text", engine.settings.max_chars)], model).results[0]


def classify_batch(engine: "Engine", texts: Sequence[str], model: str | None = None,
                   progress: Progress | None = None) -> Batch:
    """Classify many texts in one request (length-sorted batches of :data:`BATCH`); the results keep the input
    order, and empty texts keep their place unclassified."""
    texts = list(texts)
    if not any(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInputError("There is no text to classify: give at least one non-empty line or row.")
    if len(texts) > MAX_TEXTS:
        raise InputTooLargeError(f"{len(texts):,} texts is more than the {MAX_TEXTS:,} one batch can hold; "
                                 "split the file.")
    for i, t in enumerate(texts, start=1):
        if not isinstance(t, str):
            raise InvalidInputError(f"Row {i} is not text ({type(t).__name__}).")
        if len(t) > engine.settings.max_chars:
            raise InputTooLargeError(f"Row {i} has {len(t):,} characters; the limit is "
                                     f"{engine.settings.max_chars:,}. Shorten it.")
    keep = [i for i, t in enumerate(texts) if t.strip()]
    results, notes = _classify_texts(engine, [texts[i].strip() for i in keep], model, progress)
    name = results[0].model
    out = [Classification(t, "", 0.0, {}, name, ("empty text: not classified",)) for t in texts]
    for i, r in zip(keep, results):
        out[i] = dataclasses.replace(r, text=texts[i], notes=notes + r.notes)
    return Batch(tuple(out), name, tuple(results[0].distribution), notes)


def explain(engine: "Engine", text: str, model: str | None = None) -> Explanation:
    """Which words pushed the prediction, by occlusion: each word's importance is how much the predicted label's
    probability falls when the word is dropped. The variants go to the model as one request, so they share forward
    passes (one, for a text of fewer than :data:`BATCH` words)."""
    text = check_text(text, "text", engine.settings.max_chars)
    words = list(WORD.finditer(text))
    if not words:
        raise InvalidInputError("The text has no words to weigh; write a sentence.")
    if len(words) > MAX_EXPLAIN_WORDS:
        raise InputTooLargeError(f"The text has {len(words)} words; word importance is computed for at most "
                                 f"{MAX_EXPLAIN_WORDS} (one classification per word). Shorten it.")
    variants = [text] + [(text[:w.start()].rstrip() + " " + text[w.end():].lstrip()).strip() or "."
                         for w in words]
    results, notes = _classify_texts(engine, variants, model, None)
    full = results[0]
    importances = tuple(WordImportance(w.group(), w.start(), w.end(), full.score - r.distribution[full.label])
                        for w, r in zip(words, results[1:]))
    notes = notes + full.notes + (f"Occlusion: {len(words)} variants without one word each, classified together "
                                  "with the text.",)
    return Explanation(text, full.label, full.score, full.distribution, importances, full.model, notes)


def _classify_texts(engine: "Engine", texts: list[str], model: str | None,
                    progress: Progress | None) -> tuple[list[Classification], tuple[str, ...]]:
    """(results, notes for all of them) from the specialist, or from the LLM when asked for or when the specialist
    is unavailable."""
    if model == LLM:
        return llm_classify(engine, texts, progress=progress), ()
    spec = engine.spec(TASK, model)
    try:
        return list(engine.run(TASK, spec.name, tuple(texts), progress)), ()
    except ModelUnavailableError as e:
        from ..training.bundled import how_measured, offline_default

        bundled = offline_default(engine)  # MiniLM fine-tuned on the bundled reviews, when it beat the LLM
        if bundled is not None and bundled.name != spec.name:
            log.info("%s unavailable, classifying with %s: %s", spec.name, bundled.name, e)
            why = (f"{spec.name} is not on this machine and could not be downloaded, so the offline default "
                   f"classified instead. {how_measured(bundled)}")
            return list(engine.run(TASK, bundled.name, tuple(texts), progress)), (why,)
        log.info("%s unavailable, classifying with the instruct LLM: %s", spec.name, e)
        why = (f"{spec.name} is not on this machine and could not be downloaded, so the instruct LLM classified "
               "instead (zero-shot, from the probabilities of the label words).")
        return llm_classify(engine, texts, progress=progress), (why,)


# --- batch input and output --------------------------------------------------------------------------------------


def texts_from_lines(text: str) -> list[str]:
    """One text per non-empty line."""
    if not isinstance(text, str):
        raise InvalidInputError("Give the texts as text, one per line.")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _csv_reader(text: str) -> csv.DictReader:
    """Standard (Excel) CSV quoting, with the delimiter that the header row uses most: ``,`` ``;`` tab or ``|``.
    (csv.Sniffer guesses from the data rows too, and a cell full of semicolons fools it.)"""
    header = text.split("\n", 1)[0]
    delimiter = max(",;\t|", key=header.count) if any(d in header for d in ",;\t|") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        raise InvalidInputError("The CSV file is empty: it needs a header row naming its columns.")
    return reader


def csv_columns(text: str) -> list[str]:
    """The column names in the header row of a CSV file's ``text`` (decoded with ``engine.scoring.decode_upload``)."""
    return [name for name in (_csv_reader(text).fieldnames or []) if name]


def texts_from_csv(text: str, column: str) -> list[str]:
    """The cells of ``column``, one per data row, in file order (empty cells stay, as empty texts)."""
    reader = _csv_reader(text)
    if not column or column not in reader.fieldnames:
        names = ", ".join(repr(n) for n in reader.fieldnames if n)
        raise InvalidInputError(f"The CSV file has no column {column!r}; its columns are {names}. Pick one.")
    try:
        return [(row.get(column) or "") for row in reader]
    except csv.Error as e:
        raise InvalidInputError(f"The CSV file is malformed ({e}); check its quoting.") from e


# --- scoring text with the instruct LLM --------------------------------------------------------------------------


def label_spellings(tokenizer, labels: Sequence[str]) -> list[list[tuple[int, ...]]]:
    """For each label, the token sequences of its spellings: ``positive`` and ``Positive``, each with and without
    a leading space (duplicates removed)."""
    out = []
    for label in labels:
        words = dict.fromkeys((label, label.lower(), label.capitalize()))
        sequences = (tuple(tokenizer.encode(s, add_special_tokens=False)) for w in words for s in (w, " " + w))
        out.append(list(dict.fromkeys(seq for seq in sequences if seq)))
    return out


def llm_classify(engine: "Engine", texts: Sequence[str], model: str | None = None,
                 labels: Sequence[str] = LLM_LABELS, progress: Progress | None = None) -> list[Classification]:
    """Zero-shot classification by the instruct LLM from the probabilities of the label words.

    After a chat prompt that asks for one of the labels, and the start of the reply (:data:`LLM_REPLY`), each
    spelling of a label gets the probability of its token sequence as the next word (one next-token distribution
    per distinct prefix, and only while the prefix has a probability of at least :data:`LLM_MIN_PREFIX_PROB`; a
    label word of one token needs only the first); a label's probability is the sum over its spellings,
    renormalised over the labels. The distributions come from the LLM's worker as next-token ("lens") requests,
    which it answers together in one forward pass.
    """
    from .generation import TASK as GENERATION, LensPayload, Prepared, make_options

    spec = engine.spec(GENERATION, model)
    served = engine.served(GENERATION, spec.name)
    with served.tokenizer_lock:
        spellings = label_spellings(served.tokenizer, labels)
    # prefix of a spelling -> the tokens that may follow it: one next-token distribution is read per prefix
    follow: dict[tuple[int, ...], set[int]] = {}
    for seq in (seq for seqs in spellings for seq in seqs):
        for j in range(len(seq)):
            follow.setdefault(seq[:j], set()).add(seq[j])
    choices = ", ".join(labels[:-1]) + " or " + labels[-1]
    system = LLM_SYSTEM.format(choices=choices)
    prepared = [served.prepare(LLM_PROMPT.format(text=t), 16, None, system) for t in texts]
    with served.tokenizer_lock:
        reply = tuple(served.tokenizer.encode(LLM_REPLY, add_special_tokens=False))
    options = make_options(max_new_tokens=1, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    # (text, token prefix) -> its probability as the reply's next tokens; read breadth first, and a prefix only
    # while it is likely enough to matter (a spelling is never more likely than its first tokens)
    prefix_prob = {(row, ()): 1.0 for row in range(len(texts))}
    for depth in range(max(map(len, follow))):
        jobs = [(row, prefix) for row in range(len(texts)) for prefix in follow if len(prefix) == depth
                and prefix_prob.get((row, prefix), 0.0) >= LLM_MIN_PREFIX_PROB]
        for start in range(0, len(jobs), LLM_BATCH):  # at most LLM_BATCH requests in the LLM's queue at once
            requests = []
            for row, prefix in jobs[start:start + LLM_BATCH]:
                ids = prepared[row].ids + reply + prefix
                request = engine.submit(GENERATION, spec.name,
                                        LensPayload(Prepared(ids, prepared[row].chat, ()), options, 1))
                requests.append(request)
            for (row, prefix), request in zip(jobs[start:start + LLM_BATCH], requests):
                probs = request.result().probs  # (vocab,) the next-token distribution after the prefix
                for t in follow[prefix]:
                    prefix_prob[row, prefix + (t,)] = prefix_prob[row, prefix] * float(probs[t])
            if progress is not None and depth == 0:
                done = min(start + LLM_BATCH, len(jobs))
                progress(done / len(jobs), f"scored {done} of {len(texts)} texts")
    mass = np.array([[sum(prefix_prob.get((row, seq), 0.0) for seq in seqs) for seqs in spellings]
                     for row in range(len(texts))])
    notes = [p.notes + (() if p.chat else (f"{spec.name} has no chat template: the prompt was plain text.",))
             for p in prepared]
    results = []
    for text, row, extra in zip(texts, mass, notes):
        total = row.sum()
        dist = row / total if total > 0 else np.full(len(labels), 1 / len(labels))
        best = int(np.argmax(dist))
        share = f"{total:.1%}" if total >= 1e-3 else f"{total:.1e}"
        note = (f"Zero-shot by {spec.name}: the label words got {share} of its probability for the reply's next "
                "word, renormalised over the labels.")
        results.append(Classification(text, labels[best], float(dist[best]),
                                      {label: float(p) for label, p in zip(labels, dist)}, spec.name,
                                      (note,) + extra, generative=True))
    return results
