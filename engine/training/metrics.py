"""How well a classifier did on held-out examples: accuracy, macro-F1, per-label precision/recall/F1, the confusion
matrix and the misclassified examples (worst first). Plain numpy, so the baselines and the fine-tuned models are
measured by the same code."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

MAX_MISCLASSIFIED = 50  # the examples kept for the report, worst first


@dataclasses.dataclass(frozen=True)
class LabelScores:
    precision: float
    recall: float
    f1: float
    support: int  # held-out examples with this label


@dataclasses.dataclass(frozen=True)
class Mistake:
    text: str
    label: str  # the true label
    predicted: str
    p_label: float  # the probability the model gave the true label (low: confidently wrong)


@dataclasses.dataclass(frozen=True)
class ClassifierMetrics:
    """Scores on ``n`` held-out examples. ``confusion[i][j]``: examples of ``labels[i]`` predicted as ``labels[j]``."""

    labels: tuple[str, ...]
    n: int
    accuracy: float
    macro_f1: float
    per_label: dict[str, LabelScores]
    confusion: tuple[tuple[int, ...], ...]
    misclassified: tuple[Mistake, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return f"accuracy {self.accuracy:.1%}, macro-F1 {self.macro_f1:.3f} on {self.n} held-out examples"


def evaluate(labels: Sequence[str], truth: Sequence[int], probs: np.ndarray,
             texts: Sequence[str] | None = None) -> ClassifierMetrics:
    """Metrics of predictions ``probs`` (examples, labels) against label indices ``truth``; with ``texts``, the
    misclassified examples too, the lowest probability of the true label first."""
    truth = np.asarray(truth, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=1)
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_label, f1s = {}, []
    for i, label in enumerate(labels):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = LabelScores(float(precision), float(recall), float(f1), int(confusion[i, :].sum()))
        if confusion[i, :].sum():  # macro-F1 over the labels present in the held-out data
            f1s.append(f1)
    mistakes: tuple[Mistake, ...] = ()
    if texts is not None:
        wrong = np.flatnonzero(predicted != truth)
        p_true = probs[np.arange(len(truth)), truth]
        order = wrong[np.argsort(p_true[wrong], kind="stable")]
        mistakes = tuple(Mistake(texts[i], labels[truth[i]], labels[predicted[i]], float(p_true[i]))
                         for i in order[:MAX_MISCLASSIFIED])
    n = len(truth)
    return ClassifierMetrics(tuple(labels), n, float((predicted == truth).mean()) if n else 0.0,
                             float(np.mean(f1s)) if f1s else 0.0, per_label,
                             tuple(tuple(int(v) for v in row) for row in confusion), mistakes)
