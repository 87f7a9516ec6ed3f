"""The offline sentiment default: the best classifier that can be trained from what ships with the app.

The packaged all-MiniLM-L6-v2, fine-tuned whole (3 epochs, seed 0) on the bundled template reviews
(``assets/datasets/reviews-train.csv``), is measured on the 75 hand-written reviews of ``reviews-test.csv``; the
instruct LLM's zero-shot scoring (``engine.classify(..., model="llm")``) is measured on the same reviews. The model is
saved as :data:`NAME` with both scores in its card, and it becomes the offline default only when it beats the LLM:
then the sentiment task answers with it (instead of the LLM) whenever the default specialist is not on this machine.
``scripts/setup.sh`` runs this once (``python -m engine.training.bundled``); it is skipped when the model exists for
the same data.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .store import CARD, Card

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "assets" / "datasets" / "reviews-train.csv"
TEST = ROOT / "assets" / "datasets" / "reviews-test.csv"
NAME = "minilm-reviews"
SETTINGS = dict(base="all-MiniLM-L6-v2", method="full", epochs=3, batch_size=16, seed=0)


def offline_default(engine: "Engine", name: str = NAME) -> Card | None:
    """The bundled model ``name`` (this classifier, or :mod:`.bundled_qa`'s reader) when it is registered and beat the
    instruct LLM on its held-out examples, else None."""
    if not engine.trained.has(name):
        return None
    card = engine.trained.card(name)
    return card if card.metrics.get("offline_default") else None


def files_hash(*files: Path) -> str:
    """The SHA-256 of the bundled data files, in order: a model is trained again when it changes."""
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def ready(engine: "Engine", name: str, digest: str) -> Card | None:
    """The card of ``name`` when it was prepared from data of ``digest`` (nothing to do), else None."""
    if engine.trained.has(name) and engine.trained.card(name).data.get("files_sha256") == digest:
        log.info("%s is ready (same data)", name)
        return engine.trained.card(name)
    return None


def record(engine: "Engine", card: Card, metrics: dict, digest: str) -> Card:
    """Write ``metrics`` (the comparison with the LLM) and the data's ``digest`` into the card, and register it."""
    card = dataclasses.replace(card, metrics=dict(card.metrics, **metrics), data=dict(card.data, files_sha256=digest))
    (engine.trained.folder(card.name) / CARD).write_text(card.to_json(), encoding="utf-8")
    engine.trained.scan()  # registers the new card
    return card


def how_measured(card: Card) -> str:
    """One sentence for the Sentiment tab: what the model is and how it compared with the LLM."""
    llm = card.metrics.get("llm_zero_shot", {})
    return (f"{card.name} is {card.base} fine-tuned on the {card.data.get('train', '?')} bundled template reviews; on "
            f"{card.metrics.get('n_test', '?')} hand-written held-out reviews it scored {card.metrics['accuracy']:.0%} "
            f"accuracy (macro-F1 {card.metrics['macro_f1']:.2f}), the instruct LLM zero-shot "
            f"{llm.get('accuracy', 0):.0%} (macro-F1 {llm.get('macro_f1', 0):.2f}).")


def prepare(engine: "Engine", force: bool = False) -> Card:
    """Train the bundled classifier (unless it exists for the same data), compare it with the LLM, record both in its
    card; returns the card."""
    from ..tasks.sentiment import LLM, classify_batch
    from . import tables
    from .metrics import evaluate

    digest = files_hash(TRAIN, TEST)
    if not force and (card := ready(engine, NAME, digest)) is not None:
        return card
    from .finetune import _digest

    test = tables.load(TEST)
    trained = engine.trained.card(NAME) if engine.trained.has(NAME) else None
    if force or trained is None or trained.data.get("sha256") != _digest(tables.load(TRAIN), test):
        last = None
        for last in engine.finetune_classifier(TRAIN, test=TEST, name=NAME, **SETTINGS):
            if last.kind == "epoch":
                log.info("%s", last.message)
        if last is None or last.metrics is None:
            raise RuntimeError(f"fine-tuning {NAME} ended without metrics")
    trained = engine.trained.card(NAME)  # trained now, or earlier on the same data (then only the LLM is measured)
    labels = trained.labels
    batch = classify_batch(engine, list(test.texts), LLM)
    probs = [[r.distribution.get(label, 0.0) for label in labels] for r in batch.results]
    llm = evaluate(labels, [labels.index(y) for y in test.labels], probs)
    card = engine.trained.card(NAME)
    beats = card.metrics["accuracy"] > llm.accuracy
    card = record(engine, card, {"llm_zero_shot": {"model": batch.model, "accuracy": llm.accuracy,
                                                   "macro_f1": llm.macro_f1, "confusion": llm.confusion},
                                 "offline_default": beats}, digest)
    log.info("%s: %.1f%% accuracy, the instruct LLM %.1f%%: %s", NAME, 100 * card.metrics["accuracy"],
             100 * llm.accuracy, "the offline default" if beats else "not the default (the LLM did as well)")
    return card


def run_main(description: str, prepare: "Callable[[Engine, bool], Card]", summary: "Callable[[Card], dict]") -> None:
    """The command line of an offline default (this module's, :mod:`.bundled_qa`'s): ``--force`` trains again; the
    engine is offline; prints ``summary(card)`` as one JSON line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--force", action="store_true", help="train again even when the model exists")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..config import Settings
    from ..core import Engine

    engine = Engine(Settings.from_env(offline=True))
    try:
        print(json.dumps(summary(prepare(engine, args.force))))
    finally:
        engine.close()


def main() -> None:
    run_main(__doc__.splitlines()[0], prepare, lambda card: {
        "model": card.name, "accuracy": card.metrics["accuracy"],
        "llm_zero_shot": card.metrics["llm_zero_shot"]["accuracy"], "offline_default": card.metrics["offline_default"]})


if __name__ == "__main__":
    main()
