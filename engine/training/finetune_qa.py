"""Fine-tuning a pretrained encoder into an extractive question-answering model, as SQuAD models are made.

``engine.finetune_qa(train, test=..., base="all-MiniLM-L6-v2")`` reads ``(question, context, answer)`` rows (a CSV
with those columns and an optional ``answer_start``, or tuples), puts a new span head on the encoder
(``AutoModelForQuestionAnswering``: two logits per token, how likely the answer starts there and how likely it ends
there) and trains every weight on the cross-entropy of the answer's first and last token, as BERT was fine-tuned on
SQuAD. Each example is one window ``[CLS] question [SEP] context [SEP]`` of at most ``max_length`` tokens.

Held-out exact match and token F1 (SQuAD's answer normalisation: lower case, no punctuation, no articles) are measured
before training (the new head reads nothing yet) and after every epoch, with the span rule the question-answering task
serves (:func:`engine.tasks.qa.top_spans`). The result is saved as an ``extractive-qa`` model of the
question-answering task: the Question answering tab, ``/answer`` and ``engine.answer(q, c, model=NAME)`` serve it.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import logging
import random
import re
import string
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch

from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError
from ..loading import load_tokenizer, pretrained
from ..tasks.common import length_sorted_batches
from . import tables
from .finetune import _autocast, check_learning_rate, check_whole_numbers, lr_at, resolve_base
from .store import Card, check_model_name, now_iso

if TYPE_CHECKING:
    from ..core import Engine
    from ..registry import ModelSpec
    from .runner import TrainingRun

log = logging.getLogger(__name__)

TASK = "question-answering"
COLUMNS = ("question", "context", "answer")  # and optionally "answer_start"
ENCODER_FAMILIES = ("sentence-encoder", "extractive-qa", "sequence-classification")
MAX_ANSWER_TOKENS = 30  # the QA task's default span limit
EVAL_BATCH = 32
MIN_ROWS = 10

Source = Union[tables.CsvText, str, Path, Sequence[Sequence[Any]]]


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One question with its context; ``context[start:start + len(answer)] == answer``."""

    question: str
    context: str
    answer: str
    start: int


@dataclasses.dataclass(frozen=True)
class QAOptions:
    """Every setting of a run (written into the model's card)."""

    base: str
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    seed: int
    name: str
    test_fraction: float


@dataclasses.dataclass(frozen=True)
class QAScore:
    """SQuAD's two measures over ``n`` held-out questions (both 0 to 1)."""

    exact_match: float
    f1: float
    n: int

    def summary(self) -> str:
        return f"exact match {self.exact_match:.1%}, F1 {self.f1:.1%} on {self.n} held-out questions"


@dataclasses.dataclass(frozen=True)
class QAEvent:
    """One step of progress. ``kind``: "start" (``before``: the scores of the untrained head), "step" (``loss``),
    "epoch" (``score``, ``epoch_seconds``) or "done" (``score``, ``model``; ``done`` is True)."""

    kind: str
    step: int
    steps: int
    epoch: int
    epochs: int
    elapsed: float
    message: str
    loss: float | None = None
    score: QAScore | None = None
    before: QAScore | None = None
    epoch_seconds: float | None = None
    model: str | None = None
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- data --------------------------------------------------------------------------------------------------------


def load_examples(source: Source, what: str = "training", max_bytes: int = tables.MAX_BYTES) -> list[QAExample]:
    """Rows of ``question, context, answer[, answer_start]`` from a CSV/TSV file, its text (:class:`CsvText`) or
    tuples; every problem is named (the row numbers of the first five) before anything is trained."""
    if isinstance(source, (str, Path)) and not isinstance(source, tables.CsvText):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"The {what} file {path.name!r} does not exist. Give a CSV file with the columns "
                                    "question,context,answer.")
        rows, name = _parse(tables.read_text(path, max_bytes), what), path.name
    elif isinstance(source, tables.CsvText):
        if len(source.text.encode("utf-8", "replace")) > max_bytes:
            raise InputTooLargeError(f"The {what} table has more than {max_bytes / 2**20:.0f} MB; use fewer rows.")
        rows, name = _parse(source.text, what), "CSV text"
    else:
        try:
            rows = [tuple(r) for r in source]
        except TypeError:
            raise InvalidInputError(f"The {what} data must be a CSV file, its text, or (question, context, answer) "
                                    "tuples.") from None
        name = f"{len(rows)} rows"
    examples, bad = [], collections.defaultdict(list)
    for i, row in enumerate(rows, start=2 if name != f"{len(rows)} rows" else 1):
        if len(row) not in (3, 4) or not all(isinstance(x, (str, int, type(None))) for x in row):
            bad["not (question, context, answer[, answer_start])"].append(i)
            continue
        question, context, answer = (str(x or "").strip() for x in row[:3])
        context = str(row[1] or "")  # kept as given: answer_start indexes into it
        start = row[3] if len(row) == 4 else None
        if not question or not context.strip() or not answer:
            bad["an empty question, context or answer"].append(i)
            continue
        if start in (None, ""):
            start = context.find(answer)
        try:
            start = int(start)
        except (TypeError, ValueError):
            bad["an answer_start that is not a whole number"].append(i)
            continue
        if start < 0 or context[start:start + len(answer)] != answer:
            bad["an answer that is not in its context (at answer_start)"].append(i)
            continue
        examples.append(QAExample(question, context, answer, start))
    problems = [f"{what.capitalize()} row{'s' if len(at) > 1 else ''} {', '.join(map(str, at[:5]))}"
                f"{f' and {len(at) - 5} more' if len(at) > 5 else ''}: {why}." for why, at in bad.items()]
    if problems:
        raise InvalidInputError(" ".join(problems) + " Fix those rows: each answer must be copied exactly from its "
                                "context.")
    return examples


def _parse(text: str, what: str) -> list[tuple[str, ...]]:
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise InvalidInputError(f"The {what} table is not text: it holds binary data. Give a CSV file with a header "
                                "row question,context,answer.")
    if not text.strip():
        raise InvalidInputError(f"The {what} table is empty: give a header row question,context,answer, then one row "
                                "per question.")
    delimiter = tables._delimiter(text.splitlines()[0], f"The {what} table")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InvalidInputError(f"The {what} table has no column {', '.join(map(repr, missing))}; its columns are "
                                f"{', '.join(h for h in header if h) or 'none'}. It needs question,context,answer "
                                "(and optionally answer_start).")
    index = [header.index(c) for c in COLUMNS] + ([header.index("answer_start")] if "answer_start" in header else [])
    return [tuple(row[j] if j < len(row) else "" for j in index) for row in reader if any(c.strip() for c in row)]


def split(examples: list[QAExample], fraction: float, seed: int) -> tuple[list[QAExample], list[QAExample]]:
    """A seeded held-out part; examples sharing a context stay on one side (else the test would show it)."""
    contexts = sorted({e.context for e in examples})
    random.Random(seed).shuffle(contexts)
    held = set(contexts[:max(1, round(len(contexts) * fraction))])
    return [e for e in examples if e.context not in held], [e for e in examples if e.context in held]


def _digest(train: list[QAExample], test: list[QAExample]) -> str:
    h = hashlib.sha256()
    for e in (*train, None, *test):
        h.update(b"--\n" if e is None else f"{e.question}\t{e.context}\t{e.answer}\t{e.start}\n".encode("utf-8"))
    return h.hexdigest()


# --- scoring (SQuAD's normalisation) ------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower case, without punctuation, articles and extra spaces (as the official SQuAD evaluation compares)."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    """Token overlap F1 of two answers after :func:`normalize_answer`."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if not pred or not gold:
        return float(pred == gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def score(predictions: Sequence[str], examples: Sequence[QAExample]) -> QAScore:
    em = [normalize_answer(p) == normalize_answer(e.answer) for p, e in zip(predictions, examples)]
    f1 = [f1_score(p, e.answer) for p, e in zip(predictions, examples)]
    n = len(examples)
    return QAScore(sum(em) / n if n else 0.0, sum(f1) / n if n else 0.0, n)


# --- features ----------------------------------------------------------------------------------------------------


class _Features:
    """Each example as one tokenized window with the token positions of its answer's first and last token."""

    def __init__(self, tokenizer: Any, examples: list[QAExample], max_length: int) -> None:
        self.tokenizer = tokenizer
        enc = tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                        max_length=max_length, return_offsets_mapping=True)
        self.names = [n for n in tokenizer.model_input_names if n in enc]  # ids, and BERT's token types
        self.inputs, self.offsets, self.context_mask, self.starts, self.ends, self.examples = [], [], [], [], [], []
        self.cut = 0  # examples whose answer lies beyond the window
        for i, example in enumerate(examples):
            seq = enc.sequence_ids(i)
            offsets = enc["offset_mapping"][i]
            in_context = [s == 1 for s in seq]
            a, b = example.start, example.start + len(example.answer)
            tokens = [t for t, inside in enumerate(in_context) if inside and offsets[t][0] < b and offsets[t][1] > a]
            if not tokens:
                self.cut += 1
                continue
            self.inputs.append({n: enc[n][i] for n in self.names})
            self.offsets.append(offsets)
            self.context_mask.append(np.array(in_context))
            self.starts.append(tokens[0])
            self.ends.append(tokens[-1])
            self.examples.append(example)

    def __len__(self) -> int:
        return len(self.inputs)

    def length(self, i: int) -> int:
        return len(self.inputs[i]["input_ids"])

    def batches(self, size: int) -> list[list[int]]:
        return length_sorted_batches(range(len(self)), self.length, size)

    def get(self, idx: list[int], device: str) -> dict[str, torch.Tensor]:
        enc = self.tokenizer.pad({n: [self.inputs[i][n] for i in idx] for n in self.names}, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items()}


def predict(model: Any, features: _Features, device: str, autocast: Callable) -> list[str]:
    """The best span of each window (the task's rule: the largest ``p_start * p_end`` of at most
    :data:`MAX_ANSWER_TOKENS` context tokens), as text of its context."""
    from ..tasks.qa import _masked_softmax, top_spans

    model.eval()
    out = [""] * len(features)
    with torch.inference_mode():
        for idx in features.batches(EVAL_BATCH):
            with autocast():
                output = model(**features.get(idx, device))
            starts, ends = output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()
            for row, i in enumerate(idx):
                n, allowed = features.length(i), features.context_mask[i]
                spans = top_spans(_masked_softmax(starts[row, :n], allowed), _masked_softmax(ends[row, :n], allowed),
                                  allowed, MAX_ANSWER_TOKENS, 1)
                if spans:
                    s, e, _ = spans[0]
                    out[i] = features.examples[i].context[features.offsets[i][s][0]:features.offsets[i][e][1]]
    return out


# --- the public API ----------------------------------------------------------------------------------------------


def check_options(engine: "Engine", *, base: str | None, epochs: int, batch_size: int, learning_rate: float,
                  max_length: int, seed: int, name: str | None, test_fraction: float) -> tuple[QAOptions, "ModelSpec"]:
    spec = resolve_base(engine, base or "all-MiniLM-L6-v2")
    if spec.family not in ENCODER_FAMILIES:
        raise InvalidOptionsError(f"{spec.name} is a {spec.family} model; an extractive QA model starts from an "
                                  f"encoder ({', '.join(ENCODER_FAMILIES)}).")
    check_whole_numbers(("epochs", epochs, 1, 50), ("batch_size", batch_size, 1, 256),
                        ("max_length", max_length, 32, 512))
    check_learning_rate(learning_rate)
    if not 0 < test_fraction < 1:
        raise InvalidOptionsError(f"test_fraction must be between 0 and 1, got {test_fraction!r}.")
    name = check_model_name(name or f"{spec.name}-finetuned-qa", engine.registry, engine.trained, TASK)
    return QAOptions(spec.name, int(epochs), int(batch_size), float(learning_rate), int(max_length), int(seed), name,
                     float(test_fraction)), spec


def finetune_qa(engine: "Engine", train: Source, *, test: Source | None = None, base: str | None = None,
                epochs: int = 2, batch_size: int = 16, learning_rate: float = 1e-4, max_length: int = 256,
                seed: int = 0, name: str | None = None, test_fraction: float = 0.2) -> "TrainingRun":
    """Fine-tune ``base`` (an encoder; default all-MiniLM-L6-v2) into an extractive QA model; returns the run, an
    iterator of :class:`QAEvent` whose last one has the held-out score::

        for event in engine.finetune_qa("assets/datasets/qa-train.csv", test="assets/datasets/qa-test.csv"):
            print(event.message)
        engine.answer("Who built it?", "The bridge was built by Ada Moss in 1901.", model="minilm-qa").text

    Without ``test``, a seeded ``test_fraction`` of the contexts is held out. Everything is checked before any
    compute; a problem raises :class:`~engine.errors.InvalidInputError` naming it.
    """
    opts, spec = check_options(engine, base=base, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                               max_length=max_length, seed=seed, name=name, test_fraction=test_fraction)
    limit = engine.settings.max_upload_bytes
    train_ex = load_examples(train, "training", limit)
    test_ex = load_examples(test, "test", limit) if test is not None else None
    if test_ex is None:
        train_ex, test_ex = split(train_ex, opts.test_fraction, opts.seed)
    if len(train_ex) < MIN_ROWS or not test_ex:
        raise InvalidInputError(f"{len(train_ex)} training and {len(test_ex)} held-out questions: give at least "
                                f"{MIN_ROWS} training rows and one held-out row.")
    shared = {e.context for e in train_ex} & {e.context for e in test_ex}
    if shared:
        raise InvalidInputError(f"{len(shared)} contexts are in both the training and the test data; the held-out "
                                "score would then measure memory. Remove them from one side.")
    from ..sources import resolve_files

    folder = resolve_files(spec, engine.settings)
    return engine.start_training(f"fine-tuning {opts.name!r} (extractive QA on {spec.name})",
                                 _job(engine, opts, spec, Path(folder), train_ex, test_ex))


def build_model(folder: Path, seed: int) -> tuple[Any, Any]:
    """(tokenizer, model): the pretrained encoder with a new, seeded span head."""
    tokenizer = load_tokenizer(folder)
    if not tokenizer.is_fast:
        raise InvalidOptionsError("This base model has no fast tokenizer (tokenizer.json), which extractive QA needs "
                                  "for character offsets.")
    model = pretrained("AutoModelForQuestionAnswering", folder, new_head=True, ignore_mismatched_sizes=True)
    generator = torch.Generator().manual_seed(seed)
    head = model.qa_outputs
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.bias.zero_()
    return tokenizer, model


def _job(engine: "Engine", opts: QAOptions, spec: "ModelSpec", folder: Path, train: list[QAExample],
         test: list[QAExample]) -> Callable[[Callable[[], bool]], Iterator[QAEvent]]:
    def job(should_stop: Callable[[], bool]) -> Iterator[QAEvent]:
        t0 = time.perf_counter()
        device = engine.policy.device
        torch.manual_seed(opts.seed)
        tokenizer, model = build_model(folder, opts.seed)
        model.to(device)
        train_f = _Features(tokenizer, train, opts.max_length)
        test_f = _Features(tokenizer, test, opts.max_length)
        notes = [f"{f.cut} {what} questions whose answer lies beyond {opts.max_length} tokens were left out"
                 for f, what in ((train_f, "training"), (test_f, "held-out")) if f.cut]
        batches = train_f.batches(opts.batch_size)
        steps = opts.epochs * len(batches)
        autocast = lambda: _autocast(engine)  # noqa: E731
        before = score(predict(model, test_f, device, autocast), test_f.examples)
        yield QAEvent("start", 0, steps, 0, opts.epochs, time.perf_counter() - t0,
                      f"{spec.name} with a new span head; {len(train_f)} training and {len(test_f)} held-out "
                      f"questions; before training: {before.summary()}" + "".join(f"; {n}" for n in notes),
                      before=before)
        optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=0.01)
        rng = random.Random(opts.seed)
        step, stopped, history, last = 0, False, [], before
        for epoch in range(1, opts.epochs + 1):
            order = list(range(len(batches)))
            rng.shuffle(order)
            model.train()
            epoch_start = time.perf_counter()
            for b in order:
                if should_stop():
                    stopped = True
                    break
                idx = batches[b]
                targets = {k: torch.tensor([v[i] for i in idx], device=device)
                           for k, v in (("start_positions", train_f.starts), ("end_positions", train_f.ends))}
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, steps, opts.learning_rate)
                with autocast():
                    loss = model(**train_f.get(idx, device), **targets).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                step += 1
                yield QAEvent("step", step, steps, epoch, opts.epochs, time.perf_counter() - t0,
                              f"epoch {epoch}/{opts.epochs}, step {step}/{steps}: loss {loss.item():.4f}",
                              loss=float(loss.item()))
            if step == 0:
                break
            seconds = time.perf_counter() - epoch_start
            last = score(predict(model, test_f, device, autocast), test_f.examples)
            history.append({"epoch": epoch, "exact_match": last.exact_match, "f1": last.f1,
                            "seconds": round(seconds, 2)})
            yield QAEvent("epoch", step, steps, epoch, opts.epochs, time.perf_counter() - t0,
                          f"epoch {epoch}: {last.summary()} ({seconds:.1f} s)", score=last, epoch_seconds=seconds)
            if stopped:
                break
        if step == 0:
            yield QAEvent("done", 0, steps, 0, opts.epochs, time.perf_counter() - t0,
                          "Stopped before the first step; nothing was saved.", before=before, done=True)
            return
        saved = _save(engine, model, tokenizer, opts, spec, train, test, last, before, history, notes, stopped,
                      time.perf_counter() - t0)
        yield QAEvent("done", step, steps, len(history), opts.epochs, time.perf_counter() - t0,
                      f"{last.summary()} (before training: exact match {before.exact_match:.1%}); "
                      f"{'stopped early; saved as' if stopped else 'saved as'} {saved!r}", score=last, before=before,
                      model=saved, done=True)

    return job


def _save(engine: "Engine", model: Any, tokenizer: Any, opts: QAOptions, spec: "ModelSpec", train: list[QAExample],
          test: list[QAExample], final: QAScore, before: QAScore, history: list[dict], notes: list[str],
          stopped: bool, seconds: float) -> str:
    return engine.trained.save_pretrained(opts.name, model, tokenizer, lambda size: Card(
        opts.name, TASK, "extractive-qa", "fine-tuned extractive QA model",
        f"{spec.name} fine-tuned for extractive question answering on {len(train)} questions; {final.summary()}",
        base=spec.name, settings=dataclasses.asdict(opts),
        metrics={"exact_match": final.exact_match, "f1": final.f1, "n_test": final.n,
                 "before": dataclasses.asdict(before), "epochs": history, "stopped_early": stopped,
                 "seconds": round(seconds, 1)},
        data={"train": len(train), "test": len(test), "sha256": _digest(train, test), "notes": notes},
        size=size, created=now_iso()))
