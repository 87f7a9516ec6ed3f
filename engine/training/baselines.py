"""The two baselines a fine-tuned classifier is measured against, on the same split: always the most frequent
training label, and TF-IDF word and word-pair features with logistic regression (scikit-learn). Fine-tuning is
worth its compute only by how far it beats these."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import numpy as np

from .metrics import ClassifierMetrics, evaluate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str  # "majority class", "TF-IDF + logistic regression"
    description: str
    metrics: ClassifierMetrics
    seconds: float  # training and prediction time


def majority(labels: Sequence[str], train_y: Sequence[int], test_y: Sequence[int],
             test_texts: Sequence[str] | None = None) -> Baseline:
    """Predict the most frequent training label for every text (ties: the first label)."""
    counts = np.bincount(np.asarray(train_y), minlength=len(labels))
    best = int(counts.argmax())
    probs = np.zeros((len(test_y), len(labels)))
    probs[:, best] = 1.0
    return Baseline("majority class", f"always {labels[best]!r}", evaluate(labels, test_y, probs, test_texts), 0.0)


def tfidf_logistic_regression(labels: Sequence[str], train_texts: Sequence[str], train_y: Sequence[int],
                              test_texts: Sequence[str], test_y: Sequence[int], seed: int = 0) -> Baseline:
    """TF-IDF of words and word pairs (sublinear term frequency), then a logistic regression (L2, C=10)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train_texts)
    classes = sorted(set(int(y) for y in train_y))
    model = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    model.fit(x_train, np.asarray(train_y))
    probs = np.zeros((len(test_texts), len(labels)))
    probs[:, classes] = model.predict_proba(vectorizer.transform(test_texts))
    seconds = time.perf_counter() - t0
    return Baseline("TF-IDF + logistic regression", f"{x_train.shape[1]:,} word and word-pair features",
                    evaluate(labels, test_y, probs, list(test_texts)), seconds)
