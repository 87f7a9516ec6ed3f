"""Fine-tuning: data checks that name the problem before any compute, the stratified split, the metrics, each method
on a tiny DistilBERT (the fine-tuned model beats the majority baseline on held-out data), the saved model in the
Sentiment task (classify, restart, delete), LoRA merged into a plain folder, and LoRA fine-tuning of a tiny Llama."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from engine import Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, Settings
from engine.registry import ModelSpec
from engine.training import tables
from engine.training.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "datasets" / "reviews-train.csv"
# words the tiny models' tokenizers know (tests/tiny_models.py's corpus): the label is the adjective's polarity
GOOD = ("good", "beautiful", "happy", "warm", "new")
BAD = ("cold", "old", "small", "quiet", "green")
NOUNS = ("cat", "dog", "house", "car", "book", "tree", "city", "garden", "table", "window", "school", "river",
         "bird", "child", "teacher", "friend", "door", "apple", "computer", "flower")
TEMPLATES = ("The {n} is {a}.", "The {n} was very {a} yesterday.", "I think the {n} is {a}.", "Is the {n} {a}?")


def generated(n: int = 160, seed: int = 0) -> list[tuple[str, str]]:
    """Distinct sentences whose label is set by one adjective: learnable by a tiny model in a few epochs."""
    rng = random.Random(seed)
    rows = {}
    while len(rows) < n:
        label = ("positive", "negative")[len(rows) % 2]
        text = rng.choice(TEMPLATES).format(n=rng.choice(NOUNS), a=rng.choice(GOOD if label == "positive" else BAD))
        rows.setdefault(text, label)
    return list(rows.items())


def csv_text(rows, header: str = "text,label") -> str:
    return header + "\n" + "\n".join(f'"{t}",{label}' for t, label in rows) + "\n"


@pytest.fixture
def engine(tmp_path, tiny_distilbert_sst2, tiny_causal_lm):
    e = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32"))
    e.registry.add(ModelSpec("tiny-distilbert", "sentiment", "sequence-classification", f"path:{tiny_distilbert_sst2}"))
    e.registry.add(ModelSpec("tiny-llama", "text-generation", "causal-lm", f"path:{tiny_causal_lm}", chat=True))
    yield e
    e.close()


# --- data ---------------------------------------------------------------------------------------------------------


def test_tables_read_csv_tsv_pairs_and_unquoted_commas(tmp_path):
    smoke = "text,label\n" + "\n".join([f"I loved it, wonderful {i},positive" for i in range(3)])
    ex = tables.load(tables.CsvText(smoke))
    assert ex.texts[0] == "I loved it, wonderful 0" and ex.labels == ("positive",) * 3
    assert "kept as part of the text" in ex.notes[0]
    tsv = tmp_path / "data.tsv"
    tsv.write_text("id\tsentence\tsentiment\n1\tGreat, really\tpos\n2\tBad\tneg\n", encoding="utf-8")
    ex = tables.load(tsv)
    assert ex.pairs() == [("Great, really", "pos"), ("Bad", "neg")] and ex.source == "data.tsv"
    ex = tables.load(tables.CsvText("a;b\nfine;x\n"), text_column="a", label_column="b")
    assert ex.pairs() == [("fine", "x")]
    assert tables.load([("  hi ", 1)]).pairs() == [("hi", "1")]
    assert tables.columns("text,label,domain\nx,y,z\n") == ["text", "label", "domain"]


@pytest.mark.parametrize("source, message", [
    (tables.CsvText("just one line of prose without separators\nmore prose"), r"not a table"),
    (tables.CsvText("text,score\nhello,x\n"), r"no label column.*'text', 'score'.*label_column"),
    (tables.CsvText(""), r"empty"),
    ([("a", "b", "c")], r"not a \(text, label\) pair"),
    ("/no/such/file.csv", r"no file"),
])
def test_tables_refuse_what_is_not_a_labelled_table(source, message):
    with pytest.raises(InvalidInputError, match=message):
        tables.load(source)
    with pytest.raises(InvalidInputError, match="no column 'txt'"):
        tables.load(tables.CsvText("text,label\nhi,x\n"), text_column="txt")


def test_binary_and_oversized_files_are_refused_before_reading(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InvalidInputError, match="binary data"):
        tables.load(binary)
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f:
        f.truncate(101 * 2**20)  # sparse: 101 MB by its size, nothing on disk
    with pytest.raises(InputTooLargeError, match="101.0 MB; the limit is 100 MB"):
        tables.load(huge)


def _problems(train, test=None):
    report, _, _ = tables.inspect(tables.load(train), tables.load(test) if test is not None else None)
    return " ".join(report.problems)


def test_data_problems_are_named():
    rows = generated(20)
    assert _problems(rows) == ""
    assert "5 usable rows" in _problems(rows[:5])
    assert "at least two labels" in _problems([(t, "positive") for t, _ in rows])
    assert "'rare' (1)" in _problems(rows + [("A lonely sentence.", "rare")])
    assert "empty text (rows 3)" in _problems(rows[:2] + [("", "positive")] + rows[2:])
    assert "two different labels" in _problems(rows + [(rows[0][0], "negative" if rows[0][1] == "positive" else
                                                        "positive")])
    assert "in both the training and the test data" in _problems(rows[:15], rows[10:])
    assert "never shows: 'other'" in _problems(rows[:15], rows[15:] + [("Something else.", "other")])
    report, train, _ = tables.inspect(tables.load(rows + rows[:3]))
    assert len(train) == 20 and "3 duplicate rows" in report.notes[0]


def test_split_is_stratified_seeded_and_disjoint():
    rows = generated(60) + [(f"Neutral sentence number {i}.", "neutral") for i in range(10)]
    ex = tables.load(rows)
    train, test = tables.split(ex, 0.2, seed=3)
    assert test.counts() == {"negative": 6, "neutral": 2, "positive": 6}
    assert not set(train.texts) & set(test.texts) and len(train) + len(test) == len(ex)
    assert tables.split(ex, 0.2, seed=3) == (train, test)
    assert tables.split(ex, 0.2, seed=4)[1].texts != test.texts


def test_metrics_on_a_known_confusion():
    labels = ("a", "b", "c")
    truth = [0, 0, 0, 1, 1, 2]
    probs = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.8 + 0.2 / 3
    probs[2] = [0.05, 0.9, 0.05]  # the most confident mistake
    m = evaluate(labels, truth, probs, [f"t{i}" for i in range(6)])
    assert m.confusion == ((2, 1, 0), (0, 1, 1), (0, 0, 1))
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.per_label["a"].precision == 1.0 and m.per_label["a"].recall == pytest.approx(2 / 3)
    assert m.per_label["b"].f1 == pytest.approx(0.5)
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert [x.text for x in m.misclassified] == ["t2", "t4"]  # worst (lowest p of the true label) first


# --- classifiers --------------------------------------------------------------------------------------------------


def test_bad_input_is_refused_before_any_compute(engine, tmp_path):
    rows = generated(40)
    for kwargs, message in ((dict(train=rows[:5]), "5 usable rows"),
                            (dict(train=rows, method="everything"), "method must be one of"),
                            (dict(train=rows, base="whisper-base"), "whisper model"),
                            (dict(train=rows, base="no-such-model"), "Unknown base model"),
                            (dict(train=rows, epochs=0), "epochs must be"),
                            (dict(train=rows, name="bad name!"), "name must be"),
                            (dict(train=rows, name="distilbert-sst2"), "built-in"),
                            (dict(train=rows, base="tiny-distilbert", method="top_layers", top_layers=5),
                             "has 2 layers"),
                            (dict(train=tables.CsvText("text,score\nhello,1\n")), "no label column")):
        with pytest.raises((InvalidInputError, InvalidOptionsError), match=message):
            engine.finetune_classifier(**{"base": "tiny-distilbert", **kwargs})
        assert engine.training.running is None
    assert not (tmp_path / "trained").exists() or not any((tmp_path / "trained").iterdir())


def _train(engine, method, name, rows=None, **kwargs):
    events = list(engine.finetune_classifier(rows or generated(), base="tiny-distilbert", method=method, name=name,
                                             seed=0, **kwargs))
    return events, events[-1]


def test_full_fine_tuning_beats_the_majority_baseline_and_is_served_everywhere(engine, tmp_path):
    events, last = _train(engine, "full", "tiny-full", epochs=6, batch_size=8, learning_rate=3e-3)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 6
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, len(steps) + 1)) and all(e.loss > 0 for e in steps)
    assert last.done and last.model == "tiny-full"
    majority = next(b for b in last.baselines if b.name == "majority class").metrics
    assert majority.accuracy == pytest.approx(0.5)
    assert last.metrics.n == 32 and last.metrics.accuracy >= majority.accuracy + 0.25, last.metrics
    assert sum(map(sum, last.metrics.confusion)) == 32
    assert set(last.metrics.per_label) == {"negative", "positive"}

    result = engine.classify("The cat is good.", model="tiny-full")
    assert set(result.distribution) == {"negative", "positive"} and result.model == "tiny-full"
    card = json.loads((tmp_path / "trained" / "tiny-full" / "card.json").read_text())
    assert card["base"] == "tiny-distilbert" and card["settings"]["method"] == "full"
    assert len(card["data"]["sha256"]) == 64 and card["metrics"]["accuracy"] == last.metrics.accuracy
    assert "TF-IDF + logistic regression" in card["metrics"]["baselines"]
    engine.close()

    again = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32"))  # a restart
    try:
        assert "tiny-full" in [s.name for s in again.registry.for_task("sentiment")]
        assert again.classify("The cat is good.", model="tiny-full").distribution == pytest.approx(
            result.distribution, abs=1e-5)
        again.delete_model("tiny-full")
        assert "tiny-full" not in again.registry.names()
        assert not (tmp_path / "trained" / "tiny-full").exists()
    finally:
        again.close()


@pytest.mark.parametrize("method", ["probe", "top_layers", "lora"])
def test_each_method_trains_what_it_says_and_saves_a_plain_model(engine, tmp_path, method):
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(engine.spec("sentiment", "tiny-distilbert").location)
    _, last = _train(engine, method, f"tiny-{method.replace('_', '-')}", epochs=2, top_layers=1)
    folder = tmp_path / "trained" / last.model
    assert not (folder / "adapter_config.json").exists()  # LoRA merged: a plain classifier folder
    tuned = AutoModelForSequenceClassification.from_pretrained(folder)
    changed = {name for name, p in tuned.state_dict().items()
               if name in base.state_dict() and not np.allclose(p.numpy(), base.state_dict()[name].numpy())}
    assert "classifier.weight" in changed  # the new head always trains
    embeddings = {n for n in changed if "embeddings" in n}
    layer0 = {n for n in changed if ".layer.0." in n}
    layer1 = {n for n in changed if ".layer.1." in n}
    if method == "probe":
        assert not embeddings and not layer0 and not layer1
    elif method == "top_layers":
        assert not embeddings and not layer0 and layer1
    else:  # LoRA: the attention projections of every layer move (the adapters merged in), embeddings do not
        assert not embeddings and any("q_lin" in n for n in layer0) and any("v_lin" in n for n in layer1)
        assert not any("ffn" in n for n in changed)
    assert engine.classify("The dog is cold.", model=last.model).label in ("negative", "positive")


def test_csv_with_a_separate_test_table_and_class_weights(engine):
    rows = generated(120)
    _, last = _train(engine, "full", "tiny-csv", rows=tables.CsvText(csv_text(rows[:100], "sentence,sentiment")),
                     test=tables.CsvText(csv_text(rows[100:], "sentence,sentiment")), epochs=1,
                     class_weights=True, optimizer="sgd", learning_rate=0.05)
    assert last.metrics.n == 20 and last.done


def test_stop_saves_what_it_has(engine):
    run = engine.finetune_classifier(generated(), base="tiny-distilbert", method="full", epochs=50, name="tiny-stop")
    for event in run:
        if event.kind == "step" and event.step == 3:
            run.stop()
    assert event.done and event.model == "tiny-stop" and event.step < 50 * 8
    assert engine.trained.card("tiny-stop").metrics["stopped_early"] is True


# --- language models ----------------------------------------------------------------------------------------------


def test_lm_lora_lowers_validation_perplexity_and_is_served(engine, tmp_path):
    text = "The cat is happy. The dog is happy. " * 60
    with pytest.raises(InvalidInputError, match="tokens long"):
        engine.finetune_lm("Too short.", base="tiny-llama", block_size=32)
    with pytest.raises(InvalidOptionsError, match="steps must be"):
        engine.finetune_lm(text, base="tiny-llama", steps=0)
    events = list(engine.finetune_lm(text, base="tiny-llama", steps=40, block_size=32, batch_size=4, lora_r=8,
                                     learning_rate=1e-2, name="tiny-lm-lora", prompt="The cat"))
    first, last = events[0], events[-1]
    assert first.kind == "start" and first.sample_before
    assert [e.step for e in events if e.kind == "step"] == list(range(1, 41))
    assert last.done and last.model == "tiny-lm-lora"
    assert last.perplexity_after < 0.75 * last.perplexity_before, (last.perplexity_before, last.perplexity_after)
    assert last.sample_before != last.sample_after
    folder = tmp_path / "trained" / "tiny-lm-lora"
    assert (folder / "model.safetensors").exists() and not (folder / "adapter_config.json").exists()
    result = engine.generate("The cat", model="tiny-lm-lora", max_new_tokens=4, temperature=0)
    assert result.model == "tiny-lm-lora"
    assert engine.trained.card("tiny-lm-lora").metrics["perplexity_after"] == last.perplexity_after


# --- the tab's HTTP API -------------------------------------------------------------------------------------------


def test_endpoints_stream_events_and_never_read_server_paths(engine, tmp_path):
    import gradio as gr
    from gradio_client import handle_file

    from app_process import serving
    from apps import finetune

    rows = generated(24)
    upload = tmp_path / "train.csv"
    upload.write_text(csv_text(rows), encoding="utf-8")
    with gr.Blocks() as demo:
        finetune.build(engine)
    with serving(demo) as client:
        smoke = "text,label\n" + "\n".join([f"I loved it, wonderful {i},positive" for i in range(12)] +
                                           [f"I hated it, awful {i},negative" for i in range(12)])
        last = client.predict(train=smoke, base="tiny-distilbert", epochs=1, method="probe", name="smoke-classifier",
                              api_name="/finetune_classifier")
        assert last["done"] and last["model"] == "smoke-classifier"
        assert last["metrics"]["n"] == 4 and set(last["baselines"]) == {"majority class",
                                                                        "TF-IDF + logistic regression"}
        assert engine.classify("I loved it", model="smoke-classifier").label in ("positive", "negative")
        job = client.submit(train=handle_file(str(upload)), base="tiny-distilbert", epochs=1, method="full",
                            name="upload-classifier", api_name="/finetune_classifier")
        outputs = job.result() and job.outputs()
        assert [o["kind"] for o in outputs][-1] == "done" and any(o["kind"] == "step" for o in outputs)
        with pytest.raises(Exception, match="not a table"):
            client.predict(train=str(upload), base="tiny-distilbert", api_name="/finetune_classifier")
        with pytest.raises(InvalidInputError, match="uploaded with the request"):  # a forged file reference
            finetune.http_table({"path": str(upload), "meta": {"_type": "gradio.FileData"}})
        last = client.predict(text="The cat is happy. The dog is happy. " * 30, base="tiny-llama", steps=3,
                              block_size=16, name="smoke-lm", api_name="/finetune_lm")
        assert last["done"] and last["model"] == "smoke-lm" and last["perplexity_after"] > 0


def test_the_bundled_classifier_answers_offline_only_when_it_beat_the_llm(engine):
    """Offline, the unavailable default specialist gives way to the bundled classifier when its card says it beat the
    LLM on held-out data (engine/training/bundled.py); the note says which model answered and how it was measured."""
    import dataclasses

    from engine.training import bundled
    from engine.training.store import CARD

    _train(engine, "probe", bundled.NAME, epochs=1)
    assert bundled.offline_default(engine) is None  # no comparison with the LLM recorded: not the default
    card = engine.trained.card(bundled.NAME)
    metrics = dict(card.metrics, llm_zero_shot={"accuracy": 0.4, "macro_f1": 0.3}, offline_default=True)
    (engine.trained.folder(bundled.NAME) / CARD).write_text(dataclasses.replace(card, metrics=metrics).to_json())
    engine.trained.scan()
    result = engine.classify("The cat is good.")  # the default, distilbert-sst2, is a hub model: not here
    assert result.model == bundled.NAME
    assert "offline default" in result.notes[0] and "instruct LLM zero-shot 40%" in result.notes[0]
