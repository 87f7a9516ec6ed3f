"""Fine-tuning an extractive QA model: data checks that name the problem before any compute, SQuAD's scoring, a tiny
DistilBERT that learns to point at the answer (held-out exact match above its untrained head's) and is then served by
the question-answering task, the bundled model as the offline default only when it beat the LLM, and the packaged
MiniLM fine-tuned on the bundled questions: real weights, on which reduced precision is judged."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from engine import Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, Settings
from engine.registry import ModelSpec
from engine.training import tables
from engine.training.finetune_qa import f1_score, load_examples, normalize_answer, score, split, QAExample

ROOT = Path(__file__).resolve().parents[1]
# words the tiny models' WordPiece knows (tests/tiny_models.py's corpus)
NOUNS = ("cat", "dog", "house", "car", "book", "tree", "city", "garden", "table", "window", "school", "river",
         "bird", "child", "teacher", "friend", "door", "apple", "computer", "flower")
COLOURS = ("green", "old", "small", "warm", "new", "cold", "quiet", "beautiful")


def generated(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(question, context, answer): a thing's adjective, in one of two sentences in either order (the other names two
    things and no adjective), so the answer moves and a model must find it by what it is."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, c = rng.sample(NOUNS, 3)
        colour = rng.choice(COLOURS)
        sentences = [f"The {a} is {colour}.", f"The {b} is near the {c}."]
        rng.shuffle(sentences)
        rows.append((f"What is the {a} like?", " ".join(sentences), colour))
    return rows


@pytest.fixture
def engine(tmp_path, tiny_distilbert_qa):
    e = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32"))
    e.registry.add(ModelSpec("tiny-qa", "question-answering", "extractive-qa", f"path:{tiny_distilbert_qa}"))
    yield e
    e.close()


# --- data and scoring ---------------------------------------------------------------------------------------------


def test_rows_are_read_from_csv_text_and_tuples_and_bad_rows_are_named():
    text = ('question,context,answer,answer_start\n"Who?","Ada, then Ada again.",Ada,10\n'
            '"When?","In 1901, or so.",1901,\n')
    rows = load_examples(tables.CsvText(text))
    assert rows == [QAExample("Who?", "Ada, then Ada again.", "Ada", 10),
                    QAExample("When?", "In 1901, or so.", "1901", 3)]
    assert load_examples([("Who?", "Bo ran.", "Bo")]) == [QAExample("Who?", "Bo ran.", "Bo", 0)]
    with pytest.raises(InvalidInputError, match=r"Training rows 1, 2: an answer that is not in its context"):
        load_examples([("Who?", "Bo ran.", "Al"), ("Who?", "Bo ran.", "Bo", 3)])
    with pytest.raises(InvalidInputError, match="has no column 'answer'"):
        load_examples(tables.CsvText("question,context\nWho?,Bo ran.\n"))
    with pytest.raises(InvalidInputError, match="empty question"):
        load_examples([("", "Bo ran.", "Bo")])
    with pytest.raises(InvalidInputError, match="binary data"):
        load_examples(tables.CsvText("question,context,answer\n\x00\x01,x,y\n"))
    with pytest.raises(InputTooLargeError, match="use fewer rows"):
        load_examples(tables.CsvText("question,context,answer\n" + "Who?,Bo ran.,Bo\n" * 1000), max_bytes=1000)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_examples(Path("/no/such/file.csv"))


def test_split_keeps_each_context_on_one_side():
    rows = [QAExample(f"q{i}", f"context {i // 3}", "context", 0) for i in range(60)]
    train, test = split(rows, 0.2, seed=1)
    assert len(train) + len(test) == 60 and test
    assert not {e.context for e in train} & {e.context for e in test}
    assert split(rows, 0.2, seed=1) == (train, test)


def test_squad_normalisation_and_f1():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert f1_score("the Eiffel Tower", "Eiffel Tower in Paris") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1_score("Paris", "London") == 0.0
    s = score(["Paris", "a tower"], [QAExample("", "", "paris", 0), QAExample("", "", "the old tower", 0)])
    assert s.exact_match == 0.5 and s.f1 == pytest.approx((1 + 2 * 1 * 0.5 / 1.5) / 2)


def test_bad_options_are_refused_before_any_compute(engine):
    rows = generated(40, 0)
    with pytest.raises(InvalidOptionsError, match="epochs"):
        engine.finetune_qa(rows, base="tiny-qa", epochs=0)
    with pytest.raises(InvalidOptionsError, match="learning_rate"):
        engine.finetune_qa(rows, base="tiny-qa", learning_rate=float("nan"))
    with pytest.raises(InvalidInputError, match="at least 10 training rows"):
        engine.finetune_qa(rows[:5], base="tiny-qa")
    with pytest.raises(InvalidInputError, match="in both the training and the test data"):
        engine.finetune_qa(rows, test=rows[:3], base="tiny-qa")
    with pytest.raises(InvalidOptionsError, match="a causal-lm model"):
        engine.finetune_qa(rows, base="llm")


# --- training -----------------------------------------------------------------------------------------------------


def test_a_tiny_model_learns_to_point_at_the_answer_and_is_served(engine):
    """The untrained head points anywhere; after training the held-out exact match is far above it, the card says
    both, and the saved model answers through the question-answering task as the run measured."""
    events = list(engine.finetune_qa(generated(300, 0), test=generated(60, 1), base="tiny-qa", epochs=3,
                                     learning_rate=1e-3, name="tiny-colours-qa"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 3
    before, after = events[0].before, events[-1].score
    assert after.exact_match >= 0.8 and after.exact_match > before.exact_match + 0.4, (before, after)
    card = engine.trained.card("tiny-colours-qa")
    assert card.task == "question-answering" and card.family == "extractive-qa"
    assert card.metrics["exact_match"] == after.exact_match
    assert card.metrics["before"]["exact_match"] == before.exact_match
    held_out = generated(60, 1)
    answers = engine.answer_batch([(q, c) for q, c, _ in held_out], model="tiny-colours-qa")
    served = score([a.text for a in answers], [QAExample(q, c, a, c.find(a)) for q, c, a in held_out])
    assert served.exact_match >= 0.8
    assert all(c[a.start:a.end] == a.text for a, (_, c, _) in zip(answers, held_out))


def test_stop_saves_what_it_has(engine):
    run = engine.finetune_qa(generated(200, 0), base="tiny-qa", epochs=3, name="stopped-qa")
    for event in run:
        if event.kind == "step":
            run.stop()
            break
    last = list(run)[-1]
    assert last.done and last.model == "stopped-qa" and last.step < last.steps
    card = engine.trained.card("stopped-qa")
    assert card.metrics["stopped_early"] and card.metrics["exact_match"] == last.score.exact_match


def test_the_bundled_qa_model_answers_offline_only_when_it_beat_the_llm(engine):
    """Offline, the unavailable default QA specialist gives way to the bundled QA model when its card says it beat
    the LLM on held-out questions (engine/training/bundled_qa.py); the note says which model answered and how."""
    from engine.training import bundled_qa
    from engine.training.store import CARD

    list(engine.finetune_qa(generated(40, 0), base="tiny-qa", epochs=1, name=bundled_qa.NAME))
    assert bundled_qa.offline_default(engine) is None  # no comparison with the LLM recorded: not the default
    card = engine.trained.card(bundled_qa.NAME)
    metrics = dict(card.metrics, llm={"exact_match": 0.1, "f1": 0.2}, offline_default=True)
    (engine.trained.folder(bundled_qa.NAME) / CARD).write_text(dataclasses.replace(card, metrics=metrics).to_json())
    engine.trained.scan()
    context = "The dog is near the tree. The cat is green."
    answer = engine.answer("What is the cat like?", context)  # the default, a hub model, is not here
    assert answer.model == bundled_qa.NAME and not answer.generative
    assert context[answer.start:answer.end] == answer.text
    assert "offline default" in answer.notes[0] and "the instruct LLM 10%" in answer.notes[0]


# --- real weights -------------------------------------------------------------------------------------------------


def test_the_packaged_minilm_learns_extractive_qa_and_bf16_keeps_its_answers(tmp_path):
    """Real weights: the packaged all-MiniLM-L6-v2 fine-tuned on the bundled questions (2 epochs) answers held-out
    questions of the training kind and some hand-written ones that its untrained head could not; then the same model
    in bf16 (what ``encoder_dtype`` auto picks on a CPU with bf16 units) gives the same answer spans as in fp32 on at
    least 99% of them (the issue's bar for reduced precision), on any CPU."""
    import torch

    from engine.training.bundled_qa import TEST, TRAIN, generated_held_out

    models_cache = ROOT / ".cache" / "test-models"  # the packaged conversion the other test files share
    hand, generated = load_examples(TEST), generated_held_out(160)
    name = "test-minilm-qa"
    fp32 = Engine(Settings(cache_dir=models_cache, offline=True, device="cpu", dtype="float32"))
    try:
        events = list(fp32.finetune_qa(TRAIN, test=TEST, epochs=2, learning_rate=3e-4, name=name))
        before, after = events[0].before, events[-1].score
        assert before.exact_match <= 0.05 and after.exact_match >= 0.25, (before, after)
        pairs = [(e.question, e.context) for e in hand + generated]
        exact = fp32.answer_batch(pairs, model=name)
        assert score([a.text for a in exact[len(hand):]], generated).exact_match >= 0.8
        reduced = Engine(Settings(cache_dir=models_cache, offline=True, device="cpu", dtype="float32",
                                  encoder_dtype="bfloat16"))
        try:
            assert reduced.served("question-answering", name).model.dtype == torch.bfloat16
            bf16 = reduced.answer_batch(pairs, model=name)
        finally:
            reduced.close()
        same = sum((a.start, a.end) == (b.start, b.end) for a, b in zip(exact, bf16))
        assert same >= 0.99 * len(pairs), f"{same}/{len(pairs)} spans identical"
        assert max(abs(a.score - b.score) for a, b in zip(exact, bf16)) > 0  # it did run in bf16
    finally:
        if fp32.trained.has(name):
            fp32.delete_model(name)
        fp32.close()


def test_the_endpoint_streams_events_and_names_bad_rows(engine):
    import gradio as gr

    from app_process import serving
    from apps import finetune

    rows = generated(30, 0)
    table = "question,context,answer\n" + "\n".join(f'"{q}","{c}",{a}' for q, c, a in rows)
    with gr.Blocks() as demo:
        finetune.build(engine)
    with serving(demo) as client:
        last = client.predict(train=table, base="tiny-qa", epochs=1, name="smoke-qa", api_name="/finetune_qa")
        assert last["done"] and last["model"] == "smoke-qa" and last["score"]["n"] > 0
        assert 0 <= last["before"]["exact_match"] <= 1
        assert engine.answer("What is the cat like?", "The cat is green.", model="smoke-qa").model == "smoke-qa"
        with pytest.raises(Exception, match="an answer that is not in its context"):
            client.predict(train=table.replace(",green", ",purple"), base="tiny-qa", api_name="/finetune_qa")
        with pytest.raises(Exception, match="has no column 'answer'"):
            client.predict(train="question,context\nWho?,Bo ran.", base="tiny-qa", api_name="/finetune_qa")
