"""The offline question-answering default: the best extractive model that can be trained from what ships with the app.

No package ships SQuAD weights. The packaged all-MiniLM-L6-v2, fine-tuned for span extraction (:mod:`.finetune_qa`)
on the bundled template questions (``assets/datasets/qa-train.csv``), is measured on the 40 hand-written questions of
``qa-test.csv``; the instruct LLM's generative answers (``engine.answer(..., model="llm")``) are measured on the same
questions. The model is saved as :data:`NAME` with both scores in its card, and it becomes the offline default only
when its exact match beats the LLM's: then the question-answering task answers with it (instead of the LLM) whenever
the default specialist is not on this machine. ``scripts/setup.sh`` runs this once (``python -m
engine.training.bundled_qa``); it is skipped when the model exists for the same data.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .store import Card

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "assets" / "datasets" / "qa-train.csv"
TEST = ROOT / "assets" / "datasets" / "qa-test.csv"
NAME = "minilm-qa"
SETTINGS = dict(base="all-MiniLM-L6-v2", epochs=4, batch_size=16, learning_rate=3e-4, seed=0)


def offline_default(engine: "Engine") -> Card | None:
    """The bundled QA model when it is registered and beat the instruct LLM on the held-out questions, else None."""
    from .bundled import offline_default as bundled_default

    return bundled_default(engine, NAME)


def how_measured(card: Card) -> str:
    """One sentence for the Question answering tab: what the model is and how it compared with the LLM."""
    llm = card.metrics.get("llm", {})
    return (f"{card.name} is {card.base} fine-tuned for extractive QA on the {card.data.get('train', '?')} bundled "
            f"template questions; on {card.metrics.get('n_test', '?')} hand-written held-out questions it scored "
            f"{card.metrics['exact_match']:.0%} exact match (F1 {card.metrics['f1']:.0%}), the instruct LLM "
            f"{llm.get('exact_match', 0):.0%} (F1 {llm.get('f1', 0):.0%}).")


def generated_held_out(n: int, seed: int = 7) -> list:
    """``n`` questions made by the bundled generator (``assets/datasets/make_qa.py``) with another seed, whose contexts
    are not in the training file: held-out questions of the training kind (the benchmark and the tests use them)."""
    import importlib.util
    import sys

    from .finetune_qa import QAExample, load_examples

    module = sys.modules.get("make_qa")
    if module is None:
        spec = importlib.util.spec_from_file_location("make_qa", TRAIN.parent / "make_qa.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_qa"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    trained = {e.context for e in load_examples(TRAIN)}
    rows = [QAExample(q, c, a, start) for q, c, a, start, *_ in module.generate(3 * n, seed) if c not in trained]
    return rows[:n]


def prepare(engine: "Engine", force: bool = False) -> Card:
    """Train the bundled QA model (unless it exists for the same data), compare it with the LLM, record both in its
    card; returns the card."""
    from ..tasks.qa import LLM, answer_batch
    from .bundled import files_hash, ready, record
    from .finetune_qa import load_examples, score

    digest = files_hash(TRAIN, TEST)
    if not force and (card := ready(engine, NAME, digest)) is not None:
        return card
    last = None
    for last in engine.finetune_qa(TRAIN, test=TEST, name=NAME, **SETTINGS):
        if last.kind in ("start", "epoch"):
            log.info("%s", last.message)
    if last is None or last.score is None:
        raise RuntimeError(f"fine-tuning {NAME} ended without a score")
    test = load_examples(TEST, "test")
    answers = answer_batch(engine, [(e.question, e.context) for e in test], LLM)
    llm = score([a.text for a in answers], test)
    card = engine.trained.card(NAME)
    beats = card.metrics["exact_match"] > llm.exact_match
    card = record(engine, card, {"llm": dict(dataclasses.asdict(llm), model=answers[0].model),
                                 "offline_default": beats}, digest)
    log.info("%s: exact match %.1f%%, the instruct LLM %.1f%%: %s", NAME, 100 * card.metrics["exact_match"],
             100 * llm.exact_match, "the offline default" if beats else "not the default (the LLM did as well)")
    return card


def main() -> None:
    from .bundled import run_main

    run_main(__doc__.splitlines()[0], prepare, lambda card: {
        "model": card.name, "exact_match": card.metrics["exact_match"], "f1": card.metrics["f1"],
        "llm": card.metrics["llm"], "offline_default": card.metrics["offline_default"]})


if __name__ == "__main__":
    main()
