"""Fine-tuning a pretrained model into a text classifier, four ways, measured against two baselines.

``engine.finetune_classifier(train, base=..., method=...)`` puts a new classification head on a pretrained model
(``AutoModelForSequenceClassification``: BERT-type encoders read the first token, decoders such as SmolLM2 the last)
and trains it on labelled texts. What is adjusted (the ``method``):

- ``probe``: the pretrained model frozen, only the new head trained. The model's outputs for each batch are computed
  once and kept, so later epochs cost only the head.
- ``top_layers``: the top ``top_layers`` transformer layers and the head trained, the rest frozen.
- ``full``: every weight trained.
- ``lora``: low-rank adapters (``peft``) on the attention projections, and the head; the adapters are merged into
  the weights before saving, so the result is a plain model folder like the others.

Texts go through in length-sorted batches (little compute on padding), on the engine's device (bf16 autocast on
GPUs that have it; fp32 on the CPU). The run is a generator of :class:`FinetuneEvent`: one per step (the training
loss), one per epoch (held-out accuracy and macro-F1, seconds), and a final one with the metrics, the baselines and
the registered model's name. The model is saved as a ``sequence-classification`` model of the sentiment task, so the
Sentiment tab, ``/classify`` and ``engine.classify(text, model=NAME)`` serve it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from ..errors import InvalidOptionsError
from ..loading import building, load_tokenizer, pretrained
from ..tasks.common import length_sorted_batches
from . import tables
from .baselines import Baseline, majority, tfidf_logistic_regression
from .metrics import ClassifierMetrics, evaluate
from .store import Card, check_model_name, now_iso

if TYPE_CHECKING:
    from ..core import Engine
    from ..registry import ModelSpec
    from .runner import TrainingRun

log = logging.getLogger(__name__)

METHODS = ("probe", "top_layers", "full", "lora")
#: learning rates that worked on the bundled example with MiniLM (AdamW, 3 epochs, batch 16)
DEFAULT_LEARNING_RATE = {"probe": 1e-2, "top_layers": 2e-4, "full": 1e-4, "lora": 1e-3}
OPTIMIZERS = ("adamw", "sgd")
BASE_FAMILIES = ("sentence-encoder", "extractive-qa", "sequence-classification", "causal-lm")
DEFAULT_BASE = "all-MiniLM-L6-v2"
LLM = "llm"  # base name of the default instruct LLM (its last hidden state feeds the head)
TASK = "sentiment"
EVAL_BATCH = 64
#: LoRA's target modules where peft has no default: the query and value projections, as peft does for BERT
LORA_TARGETS = {"distilbert": ["q_lin", "v_lin"]}
WARMUP = 0.06  # share of the steps with a linearly rising learning rate


@dataclasses.dataclass(frozen=True)
class ClassifierOptions:
    """Every setting of a run (written into the model's card)."""

    base: str
    method: str
    top_layers: int
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    seed: int
    name: str
    optimizer: str
    class_weights: bool
    test_fraction: float
    lora_r: int


@dataclasses.dataclass(frozen=True)
class FinetuneEvent:
    """One step of progress. ``kind``: "start", "step" (``loss``), "epoch" (``val_accuracy``, ``val_macro_f1``,
    ``epoch_seconds``) or "done" (``metrics``, ``baselines``, ``model``; ``done`` is True)."""

    kind: str
    step: int
    steps: int
    epoch: int
    epochs: int
    elapsed: float  # seconds since the run started
    message: str
    loss: float | None = None
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    epoch_seconds: float | None = None
    train_sentences_per_s: float | None = None
    metrics: ClassifierMetrics | None = None
    baselines: tuple[Baseline, ...] = ()
    model: str | None = None
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- options and data --------------------------------------------------------------------------------------------


def resolve_base(engine: "Engine", base: str | None) -> "ModelSpec":
    """The registry model to start from: an encoder of any task, or ``"llm"`` (or a text-generation model) whose
    last hidden state feeds the head."""
    if not base:
        base = DEFAULT_BASE
    if base == LLM:
        return engine.registry.default("text-generation")
    spec = engine.registry.get(base) if base in engine.registry.names() else None
    if spec is None:
        usable = [s.name for s in _base_specs(engine)]
        raise InvalidOptionsError(f"Unknown base model {base!r}. Usable bases: {', '.join(usable)} or 'llm'.")
    if spec.family not in BASE_FAMILIES:
        raise InvalidOptionsError(f"{spec.name} is a {spec.family} model; a classifier starts from an encoder "
                                  f"({', '.join(BASE_FAMILIES[:3])}) or a causal language model.")
    return spec


def _base_specs(engine: "Engine") -> list["ModelSpec"]:
    return [s for s in (engine.registry.get(n) for n in engine.registry.names()) if s.family in BASE_FAMILIES]


def base_choices(engine: "Engine") -> list[str]:
    """The models a classifier can start from, encoders first."""
    specs = sorted(_base_specs(engine), key=lambda s: (s.family == "causal-lm", s.name != DEFAULT_BASE))
    return [s.name for s in specs]


def check_whole_numbers(*checks: tuple[str, Any, int, int]) -> None:
    """Each ``(name, value, low, high)``: a whole number (not a bool) from ``low`` to ``high``, else the error
    naming it."""
    for key, value, low, high in checks:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidOptionsError(f"{key} must be a whole number from {low} to {high}, got {value!r}.")


def check_learning_rate(value: Any) -> float:
    """A learning rate above 0 and at most 1, or the error naming it."""
    if not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 < value <= 1):
        raise InvalidOptionsError(f"learning_rate must be above 0 and at most 1, got {value!r}.")
    return float(value)


def check_options(engine: "Engine", *, base: str | None, method: str, top_layers: int, epochs: int, batch_size: int,
                  learning_rate: float | None, max_length: int, seed: int, name: str | None, optimizer: str,
                  class_weights: bool, test_fraction: float, lora_r: int) -> tuple[ClassifierOptions, "ModelSpec"]:
    """Validated options (and the base model's registry entry); any problem raises at once, before compute."""
    spec = resolve_base(engine, base)
    if method not in METHODS:
        raise InvalidOptionsError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if optimizer not in OPTIMIZERS:
        raise InvalidOptionsError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}.")
    check_whole_numbers(("epochs", epochs, 1, 50), ("batch_size", batch_size, 1, 256),
                        ("max_length", max_length, 8, 512), ("top_layers", top_layers, 1, 64),
                        ("lora_r", lora_r, 1, 256))
    lr = DEFAULT_LEARNING_RATE[method] if learning_rate in (None, 0) else check_learning_rate(learning_rate)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InvalidOptionsError(f"seed must be a whole number, got {seed!r}.")
    default_name = f"{spec.name.split('-')[0].lower()}-{method.replace('_', '-')}-classifier"
    name = check_model_name(name or default_name, engine.registry, engine.trained, TASK)
    opts = ClassifierOptions(spec.name, method, int(top_layers), int(epochs), int(batch_size), lr, int(max_length),
                             int(seed), name, optimizer, bool(class_weights), float(test_fraction), int(lora_r))
    return opts, spec


def prepare_data(engine: "Engine", train: tables.Source, test: tables.Source | None = None, *,
                 text_column: str | None = None, label_column: str | None = None, test_fraction: float = 0.2,
                 seed: int = 0) -> tuple[tables.DataReport, tables.Examples, tables.Examples]:
    """Read and check the data and make the split; returns the report and the training and test examples. Problems
    are in ``report.problems`` (``report.check()`` raises them)."""
    limit = engine.settings.max_upload_bytes
    train_ex = tables.load(train, text_column, label_column, "training", limit)
    test_ex = tables.load(test, text_column, label_column, "test", limit) if test is not None else None
    report, train_ex, test_ex = tables.inspect(train_ex, test_ex, test_fraction)
    if test_ex is None and not report.problems:
        train_ex, test_ex = tables.split(train_ex, test_fraction, seed)
    return report, train_ex, test_ex if test_ex is not None else tables.Examples((), (), "")


def inspect_data(engine: "Engine", train: tables.Source, test: tables.Source | None = None, *,
                 text_column: str | None = None, label_column: str | None = None,
                 test_fraction: float = 0.2) -> tables.DataReport:
    """The label counts and the problems of the data, without training (what the tab shows after an upload)."""
    return prepare_data(engine, train, test, text_column=text_column, label_column=label_column,
                        test_fraction=test_fraction)[0]


# --- the public API ----------------------------------------------------------------------------------------------


def finetune_classifier(engine: "Engine", train: tables.Source, *, test: tables.Source | None = None,
                        base: str | None = None, method: str = "probe", top_layers: int = 2, epochs: int = 3,
                        batch_size: int = 16, learning_rate: float | None = None, max_length: int = 128,
                        seed: int = 0, name: str | None = None, optimizer: str = "adamw",
                        class_weights: bool = False, text_column: str | None = None,
                        label_column: str | None = None, test_fraction: float = 0.2,
                        lora_r: int = 8) -> "TrainingRun":
    """Fine-tune ``base`` (default all-MiniLM-L6-v2; ``"llm"`` for the instruct LLM) into a classifier of the labels
    in ``train``; returns the run, an iterator of :class:`FinetuneEvent` whose last one has the metrics::

        for event in engine.finetune_classifier("reviews.csv", method="full", epochs=3, name="my-sentiment"):
            print(event.message)
        engine.classify("What a lovely day", model="my-sentiment")

    ``train``/``test``: ``(text, label)`` pairs, a CSV/TSV file's path, or a table's text (header first; columns
    ``text_column``/``label_column``, found by their usual names when not given). Without ``test``, a stratified
    ``test_fraction`` of ``train`` is held out (shuffled with ``seed``). ``learning_rate`` None: the method's default
    (:data:`DEFAULT_LEARNING_RATE`). ``class_weights``: weigh the loss by inverse label frequency. Everything is
    checked before any compute; a problem raises :class:`~engine.errors.InvalidInputError` naming it.
    """
    opts, spec = check_options(engine, base=base, method=method, top_layers=top_layers, epochs=epochs,
                               batch_size=batch_size, learning_rate=learning_rate, max_length=max_length, seed=seed,
                               name=name, optimizer=optimizer, class_weights=class_weights,
                               test_fraction=test_fraction, lora_r=lora_r)
    report, train_ex, test_ex = prepare_data(engine, train, test, text_column=text_column,
                                             label_column=label_column, test_fraction=test_fraction, seed=seed)
    report.check()
    from ..sources import resolve_files

    folder = resolve_files(spec, engine.settings)  # unavailable offline: raises now, with how to get it
    _check_layers(folder, opts)
    job = _job(engine, opts, spec, Path(folder), train_ex, test_ex, report)
    return engine.start_training(f"fine-tuning {opts.name!r} ({opts.method} on {spec.name})", job)


def _check_layers(folder: Path, opts: ClassifierOptions) -> None:
    if opts.method != "top_layers":
        return
    with building():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(folder)
    n = next((getattr(config, k) for k in ("num_hidden_layers", "n_layers", "n_layer") if hasattr(config, k)), None)
    if n is not None and opts.top_layers > n:
        raise InvalidOptionsError(f"top_layers is {opts.top_layers}, but {opts.base} has {n} layers; choose 1 to {n} "
                                  "(all of them is the 'full' method).")


# --- the model ---------------------------------------------------------------------------------------------------


def build_model(folder: Path, labels: tuple[str, ...], seed: int) -> tuple[Any, Any]:
    """(tokenizer, model): the pretrained model with a new, seeded classification head for ``labels``."""
    tokenizer = load_tokenizer(folder)
    if tokenizer.pad_token is None:  # decoders such as GPT-2 have none; the head reads the last non-pad token
        tokenizer.pad_token = tokenizer.eos_token
    model = pretrained("AutoModelForSequenceClassification", folder, new_head=True, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
                       ignore_mismatched_sizes=True, pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = False
    generator = torch.Generator().manual_seed(seed)
    for module in head_modules(model).values():  # a new head, even when the base was a classifier already
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                with torch.no_grad():
                    sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * 0.02)
                    if sub.bias is not None:
                        sub.bias.zero_()
    return tokenizer, model


def head_modules(model: Any) -> dict[str, torch.nn.Module]:
    """The modules outside the pretrained base model (with parameters): the classification head."""
    return {n: m for n, m in model.named_children()
            if n != model.base_model_prefix and any(True for _ in m.parameters())}


def transformer_layers(base: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList in the base model."""
    lists = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise InvalidOptionsError(f"Cannot find the layers of {type(base).__name__}; use another method.")
    return max(lists, key=len)


def configure(model: Any, opts: ClassifierOptions) -> Any:
    """Freeze what the method keeps fixed (or wrap the model in LoRA adapters); returns the model to train."""
    base = getattr(model, model.base_model_prefix)
    head = head_modules(model)
    if opts.method == "full":
        model.requires_grad_(True)
        return model
    if opts.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

        targets = LORA_TARGETS.get(model.config.model_type) or TARGETS.get(model.config.model_type, "all-linear")
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=opts.lora_r, lora_alpha=2 * opts.lora_r,
                            lora_dropout=0.05, target_modules=targets, modules_to_save=list(head))
        return get_peft_model(model, config)
    model.requires_grad_(False)
    for module in head.values():
        module.requires_grad_(True)
    if opts.method == "top_layers":
        layers = transformer_layers(base)
        in_layers = {id(p) for p in layers.parameters()}
        for layer in layers[-opts.top_layers:]:
            layer.requires_grad_(True)
        for name, p in base.named_parameters():  # what comes after the layers: BERT's pooler, a final norm
            if id(p) not in in_layers and "embed" not in name:
                p.requires_grad_(True)
    return model


class EncoderCache(torch.nn.Module):
    """Stands in for a frozen base model during a linear probe: each batch's outputs are computed once (by key) and
    served from memory after that, so epochs after the first only run the head."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.key: Any = None
        self.outputs: dict[Any, Any] = {}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.key is not None and self.key in self.outputs:
            return self.outputs[self.key]
        with torch.no_grad():
            out = self.encoder(*args, **kwargs)
        if self.key is not None:
            self.outputs[self.key] = out
        return out


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first :data:`WARMUP` of the steps, then linear decay to zero."""
    warmup = max(1, int(total * WARMUP))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def _autocast(engine: "Engine") -> contextlib.AbstractContextManager:
    device = engine.policy.device
    if device.startswith("cuda") and engine.policy.dtype == torch.bfloat16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- the run -----------------------------------------------------------------------------------------------------


class _Batches:
    """Tokenized texts in fixed length-sorted batches (the same batches every epoch; their order shuffled)."""

    def __init__(self, tokenizer: Any, texts: tuple[str, ...], targets: list[int], max_length: int, size: int):
        self.tokenizer = tokenizer
        self.ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        self.targets = targets
        self.groups = length_sorted_batches(self.ids, len, size)

    def __len__(self) -> int:
        return len(self.groups)

    def get(self, b: int, device: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
        idx = self.groups[b]
        enc = self.tokenizer.pad({"input_ids": [self.ids[i] for i in idx]}, return_tensors="pt")
        target = torch.tensor([self.targets[i] for i in idx], dtype=torch.long)
        return {k: v.to(device) for k, v in enc.items()}, target.to(device), idx


def predict(model: Any, batches: _Batches, device: str, autocast: Callable, cache: EncoderCache | None = None,
            tag: str = "eval") -> np.ndarray:
    """Label probabilities (examples, labels) in input order."""
    model.eval()
    out = np.zeros((len(batches.targets), model.config.num_labels), np.float64)
    with torch.inference_mode():
        for b in range(len(batches)):
            enc, _, idx = batches.get(b, device)
            if cache is not None:
                cache.key = (tag, b)
            with autocast():
                logits = model(**enc).logits
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def _job(engine: "Engine", opts: ClassifierOptions, spec: "ModelSpec", folder: Path, train: tables.Examples,
         test: tables.Examples, report: tables.DataReport) -> Callable[[Callable[[], bool]], Iterator[FinetuneEvent]]:
    labels = report.labels
    train_y = [labels.index(label) for label in train.labels]
    test_y = [labels.index(label) for label in test.labels]

    def job(should_stop: Callable[[], bool]) -> Iterator[FinetuneEvent]:
        t0 = time.perf_counter()
        device = engine.policy.device
        torch.manual_seed(opts.seed)
        random.seed(opts.seed)
        baselines = (majority(labels, train_y, test_y, test.texts),
                     tfidf_logistic_regression(labels, train.texts, train_y, test.texts, test_y, opts.seed))
        tokenizer, model = build_model(folder, labels, opts.seed)
        train_b = _Batches(tokenizer, train.texts, train_y, opts.max_length, opts.batch_size)
        test_b = _Batches(tokenizer, test.texts, test_y, opts.max_length, EVAL_BATCH)
        steps = opts.epochs * len(train_b)
        yield FinetuneEvent("start", 0, steps, 0, opts.epochs, time.perf_counter() - t0,
                            f"{spec.name} with a new head for {len(labels)} labels; {len(train)} training and "
                            f"{len(test)} held-out examples; {opts.method}", baselines=baselines)
        model.to(device)
        trained = configure(model, opts)
        cache = None
        if opts.method == "probe":  # the frozen base: computed once per batch
            cache = EncoderCache(getattr(model, model.base_model_prefix).eval())
            setattr(model, model.base_model_prefix, cache)
        params = [p for p in trained.parameters() if p.requires_grad]
        if opts.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=0.01)
        else:
            optimizer = torch.optim.SGD(params, lr=opts.learning_rate, momentum=0.9)
        weights = None
        if opts.class_weights:
            counts = np.bincount(train_y, minlength=len(labels)).astype(np.float64)
            weights = torch.tensor(len(train_y) / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32,
                                   device=device)
        autocast = lambda: _autocast(engine)  # noqa: E731
        rng = random.Random(opts.seed)
        step, stopped, history = 0, False, []
        for epoch in range(1, opts.epochs + 1):
            order = list(range(len(train_b)))
            rng.shuffle(order)
            trained.train()
            if cache is not None:
                cache.encoder.eval()  # its outputs are kept: no dropout in them
            epoch_start, seen = time.perf_counter(), 0
            for b in order:
                if should_stop():
                    stopped = True
                    break
                enc, target, idx = train_b.get(b, device)
                if cache is not None:
                    cache.key = ("train", b)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, steps, opts.learning_rate)
                with autocast():
                    logits = trained(**enc).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), target, weight=weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                step += 1
                seen += len(idx)
                yield FinetuneEvent("step", step, steps, epoch, opts.epochs, time.perf_counter() - t0,
                                    f"epoch {epoch}/{opts.epochs}, step {step}/{steps}: loss {loss.item():.4f}",
                                    loss=float(loss.item()))
            if stopped and seen == 0 and step == 0:
                break
            seconds = time.perf_counter() - epoch_start
            probs = predict(trained, test_b, device, autocast, cache)
            val = evaluate(labels, test_y, probs)
            history.append({"epoch": epoch, "val_accuracy": val.accuracy, "val_macro_f1": val.macro_f1,
                            "seconds": round(seconds, 2)})
            yield FinetuneEvent("epoch", step, steps, epoch, opts.epochs, time.perf_counter() - t0,
                                f"epoch {epoch}: held-out accuracy {val.accuracy:.1%}, macro-F1 "
                                f"{val.macro_f1:.3f} ({seconds:.1f} s)", val_accuracy=val.accuracy,
                                val_macro_f1=val.macro_f1, epoch_seconds=seconds,
                                train_sentences_per_s=seen / seconds if seconds > 0 else None)
            if stopped:
                break
        if step == 0:
            yield FinetuneEvent("done", 0, steps, 0, opts.epochs, time.perf_counter() - t0,
                                "Stopped before the first step; nothing was saved.", baselines=baselines, done=True)
            return
        probs = predict(trained, test_b, device, autocast, cache)
        metrics = evaluate(labels, test_y, probs, test.texts)
        if cache is not None:
            setattr(model, model.base_model_prefix, cache.encoder)
        if opts.method == "lora":
            model = trained.merge_and_unload()
        saved = save(engine, model, tokenizer, opts, spec, train, test, report, metrics, baselines, history,
                     stopped, time.perf_counter() - t0)
        what = "stopped early; saved as" if stopped else "saved as"
        yield FinetuneEvent("done", step, steps, len(history), opts.epochs, time.perf_counter() - t0,
                            f"{metrics.summary()}; {what} {saved!r}", metrics=metrics, baselines=baselines,
                            model=saved, done=True)

    return job


def save(engine: "Engine", model: Any, tokenizer: Any, opts: ClassifierOptions, spec: "ModelSpec",
         train: tables.Examples, test: tables.Examples, report: tables.DataReport, metrics: ClassifierMetrics,
         baselines: tuple[Baseline, ...], history: list[dict], stopped: bool, seconds: float) -> str:
    """Write the model, its tokenizer and its card, and register it; returns its name."""
    return engine.trained.save_pretrained(opts.name, model, tokenizer, lambda size: Card(
        opts.name, TASK, "sequence-classification", "fine-tuned classifier",
        f"{spec.name} fine-tuned ({opts.method.replace('_', ' ')}) on {train.source.split(' (')[0]}: "
        f"{', '.join(report.labels)}; {metrics.summary()}",
        base=spec.name, settings=dataclasses.asdict(opts),
        metrics={"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "n_test": metrics.n,
                 "per_label": {k: dataclasses.asdict(v) for k, v in metrics.per_label.items()},
                 "confusion": metrics.confusion, "epochs": history, "stopped_early": stopped,
                 "seconds": round(seconds, 1),
                 "baselines": {b.name: {"accuracy": b.metrics.accuracy, "macro_f1": b.metrics.macro_f1}
                               for b in baselines}},
        data={"source": train.source, "rows": len(train) + len(test), "train": len(train), "test": len(test),
              "held_out": report.held_out, "sha256": _digest(train, test), "labels": report.train_counts,
              "notes": list(report.notes)},
        labels=tuple(report.labels), size=size, created=now_iso()))


def _digest(train: tables.Examples, test: tables.Examples) -> str:
    import hashlib

    return hashlib.sha256((train.digest() + test.digest()).encode()).hexdigest()

