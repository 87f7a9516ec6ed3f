"""Sentiment: label distributions from a tiny random DistilBERT classifier, batching, occlusion, CSV batch round
trips and bad input; zero-shot by the packaged SmolLM2 and the offline fallback; ``/classify`` through
gradio_client."""
from __future__ import annotations

import csv
import io
import math
import random

import numpy as np
import pytest
import torch

from app_process import serving
import tiny_models
from engine import Engine, InputTooLargeError, InvalidInputError, ModelSpec, Registry, Settings
from engine.scoring import decode_upload
from engine.tasks.sentiment import (LLM_LABELS, LLM_PROMPT, LLM_REPLY, LLM_SYSTEM, WORD, Batch, csv_columns,
                                    label_spellings, texts_from_csv, texts_from_lines)
from tolerances import assert_probs_close, gamma, log_prob_tol, model_forward_atol, softmax_sum_tol

SENTENCES = tiny_models.corpus("en")
LOVED = "I loved this film, the acting was wonderful."


@pytest.fixture(scope="module")
def engine(tiny_distilbert_sst2, tiny_xlm_roberta_sentiment, tmp_path_factory):
    registry = Registry()
    registry.add(ModelSpec("tiny-sst2", "sentiment", "sequence-classification", f"path:{tiny_distilbert_sst2}",
                           default=True))
    registry.add(ModelSpec("tiny-xlmr", "sentiment", "sequence-classification",
                           f"path:{tiny_xlm_roberta_sentiment}"))
    # on the CPU in fp32, the precision the tolerances below are derived for (on a GPU "auto" would pick bf16)
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, device="cpu", dtype="float32",
                             max_chars=5000), registry)
    yield engine
    engine.close()


def batch_log_tol(engine, texts) -> float:
    """How far a label's log-probability may move between two float32 evaluations of the tiny classifier (another
    batch, other padding): twice the logits' rounding bound (``tolerances.forward_atol``) through the softmax."""
    served = engine.served("sentiment")
    enc = served.tokenizer(texts, padding=True, truncation=True, max_length=served.max_length, return_tensors="pt")
    with torch.inference_mode():
        scale = float(served.model(**enc).logits.abs().max())  # the size of the logits the bound is relative to
    diff = 2 * model_forward_atol(served.model.config, scale, enc["input_ids"].shape[1])
    return log_prob_tol(diff, len(served.labels))


# --- one text ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, labels", [("tiny-sst2", ("NEGATIVE", "POSITIVE")),
                                           ("tiny-xlmr", ("negative", "neutral", "positive"))])
def test_label_distribution_sums_to_one(engine, model, labels):
    result = engine.classify(LOVED, model)
    assert tuple(result.distribution) == labels and result.model == model and not result.generative
    assert sum(result.distribution.values()) == pytest.approx(1.0, abs=softmax_sum_tol(len(labels)))  # fp32 softmax
    assert all(0 <= p <= 1 for p in result.distribution.values())
    assert result.label == max(result.distribution, key=result.distribution.get)
    assert result.score == result.distribution[result.label]


def test_long_text_is_cut_and_says_so(engine):
    result = engine.classify(" ".join(SENTENCES[:120]))
    assert any("read the first 512" in n for n in result.notes)
    assert sum(result.distribution.values()) == pytest.approx(1.0, abs=softmax_sum_tol(2))


# --- many texts --------------------------------------------------------------------------------------------------
def test_batched_results_equal_one_at_a_time(engine):
    """fp32: a text's probabilities do not depend on what shares its (padded, length-sorted) batch, beyond the
    rounding of a float32 forward pass."""
    texts = random.Random(0).sample(SENTENCES, 70) + [" ".join(SENTENCES[:30])]
    batch = engine.classify_batch(texts)
    assert [r.text for r in batch.results] == texts
    tol = batch_log_tol(engine, texts)
    for text, together in zip(texts, batch.results):
        alone = engine.classify(text)
        assert together.label == alone.label
        assert_probs_close(list(together.distribution.values()), list(alone.distribution.values()), tol, what=text)


def test_a_list_gives_a_list_in_order(engine):
    results = engine.classify(["b", "a much longer text than the others, with many words in it", "c"])
    assert [r.text for r in results] == ["b", "a much longer text than the others, with many words in it", "c"]


def test_empty_rows_keep_their_place_unclassified(engine):
    batch = engine.classify_batch(["good", "", "  ", "  bad "])
    assert [r.label != "" for r in batch.results] == [True, False, False, True]
    assert batch.results[3].text == "  bad " and batch.results[3].distribution == engine.classify("bad").distribution
    assert batch.rows()[1] == [2, "", "", None]
    assert sum(batch.counts().values()) == 2 and tuple(batch.counts()) == ("NEGATIVE", "POSITIVE")


def test_csv_batch_round_trip_keeps_every_row_in_order(engine):
    rows = [{"id": str(i), "review": text, "stars": str(i % 5)} for i, text in
            enumerate(random.Random(1).sample(SENTENCES, 60))]
    rows[3]["review"] = 'He said "stop, now", then left;\nanother line'  # quotes, commas, a newline in a cell
    rows[7]["review"] = "Ünïcödé — ça marche, 東京"
    rows[11]["review"] = ""  # an empty cell keeps its row
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "review", "stars"])
    writer.writeheader()
    writer.writerows(rows)
    data = decode_upload(out.getvalue().encode("utf-8-sig"), "reviews.csv")  # with a BOM, as Excel writes it

    assert csv_columns(data) == ["id", "review", "stars"]
    texts = texts_from_csv(data, "review")
    assert texts == [r["review"] for r in rows]
    batch = engine.classify_batch(texts)
    back = list(csv.DictReader(io.StringIO(batch.to_csv())))
    assert [int(r["row"]) for r in back] == list(range(1, len(rows) + 1))
    assert [r["text"] for r in back] == [r["review"] for r in rows]
    assert [r["label"] for r in back] == [r.label for r in batch.results]
    assert back[11]["label"] == "" and back[0]["label"] in ("NEGATIVE", "POSITIVE")
    for r in back:
        if r["label"]:  # two probabilities written with 6 decimals: each off by up to 5e-7
            assert float(r["p_NEGATIVE"]) + float(r["p_POSITIVE"]) == pytest.approx(1.0, abs=1e-6 + softmax_sum_tol(2))
    assert batch.counts() == {label: sum(r.label == label for r in batch.results) for label in batch.labels}


def test_csv_dialects_are_sniffed(engine):
    assert texts_from_csv('text;n\nguter Film;1\n"a; b";2\n', "text") == ["guter Film", "a; b"]
    assert texts_from_csv("n\ttext\n1\thello\n", "text") == ["hello"]
    assert texts_from_csv("text|n\nhé|1\n", "text") == ["hé"]


def test_lines_mode():
    assert texts_from_lines("one\n\n  two  \r\nthree\n") == ["one", "two", "three"]


# --- word importance ---------------------------------------------------------------------------------------------
def test_occlusion_gives_one_score_per_word(engine):
    explanation = engine.explain(LOVED)
    words = WORD.findall(LOVED)
    assert [w.word for w in explanation.words] == words
    assert all(LOVED[w.start:w.end] == w.word for w in explanation.words)
    assert explanation.label == engine.classify(LOVED).label
    # each importance is the drop in the label's probability without the word, computed independently here (in
    # other batches: each of the two probabilities within a factor exp(+-tol) of the one computed here)
    tol = batch_log_tol(engine, [LOVED])
    for w in explanation.words:
        without = (LOVED[:w.start].rstrip() + " " + LOVED[w.end:].lstrip()).strip()
        p = engine.classify(without).distribution[explanation.label]
        assert w.importance == pytest.approx(explanation.score - p, abs=(explanation.score + p) * math.expm1(tol))
    pieces = explanation.highlights()
    assert "".join(piece for piece, _ in pieces) == LOVED
    scored = [s for _, s in pieces if s is not None]
    assert len(scored) == len(words) and max(abs(s) for s in scored) == pytest.approx(1.0)


def test_occlusion_limits(engine):
    with pytest.raises(InvalidInputError, match="no words"):
        engine.explain("!!! ???")
    with pytest.raises(InputTooLargeError, match="at most 256"):
        engine.explain("word " * 300)


# --- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, error, words", [
    ("", InvalidInputError, "text is empty"), ("  \n", InvalidInputError, "text is empty"),
    ("x" * 5001, InputTooLargeError, "limit is 5,000"), (42, InvalidInputError, "must be text"),
])
def test_bad_text_is_a_clear_message(engine, text, error, words):
    with pytest.raises(error, match=words):
        engine.classify(text)


def test_bad_batches(engine):
    with pytest.raises(InvalidInputError, match="no text to classify"):
        engine.classify_batch(["", " "])
    with pytest.raises(InputTooLargeError, match="Row 2 has 5,001 characters"):
        engine.classify_batch(["fine", "x" * 5001])


def test_csv_without_the_column_names_the_columns():
    with pytest.raises(InvalidInputError, match="no column 'text'; its columns are 'id', 'review'"):
        texts_from_csv("id,review\n1,good\n", "text")


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
    ("text\ncaf\xe9\n".encode("latin-1"), "not UTF-8 text .* line 2"),
    (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "binary file"),
    ("text\nhé\n".encode("utf-16"), "UTF-16"),
])
def test_undecodable_uploads_are_a_clear_message(tmp_path, data, words):
    import apps.sentiment

    upload = tmp_path / "upload.csv"
    upload.write_bytes(data)
    with pytest.raises(InvalidInputError, match=words):
        apps.sentiment.read_upload(str(upload), 10_000)
    with pytest.raises(InputTooLargeError):
        apps.sentiment.read_upload(str(upload), 5)


def test_empty_csv():
    with pytest.raises(InvalidInputError, match="empty"):
        csv_columns("")


# --- zero-shot by the instruct LLM -------------------------------------------------------------------------------
def test_label_words_of_smollm2(offline_engine):
    served = offline_engine.served("text-generation")
    spellings = label_spellings(served.tokenizer, LLM_LABELS)
    assert all(len(seqs) >= 3 for seqs in spellings)
    firsts = [{seq[0] for seq in seqs if len(seq) == 1} for seqs in spellings]
    assert not (firsts[0] & firsts[1] or firsts[0] & firsts[2] or firsts[1] & firsts[2])


def test_llm_zero_shot_scores_label_words(offline_engine):
    loved, hated = offline_engine.classify([LOVED, "What a waste of time, I hated it."], model="llm")
    for result in (loved, hated):
        assert result.generative and result.model == "SmolLM2-135M-Instruct"
        assert tuple(result.distribution) == LLM_LABELS
        assert sum(result.distribution.values()) == pytest.approx(1.0, abs=gamma(3, torch.float64))  # normalised
        assert any("label words got" in n for n in result.notes)
    assert loved.label == "positive" and hated.label == "negative"
    # batched lens requests give what one alone gives, up to the rounding of SmolLM2's float32 logits: each token's
    # log-probability moves by at most lp, a spelling of m tokens by m lp, a label's mass (a sum of spellings) by as
    # much, and its share of the total by twice that
    served = offline_engine.served("text-generation")
    m = max(len(seq) for seqs in label_spellings(served.tokenizer, LLM_LABELS) for seq in seqs)
    choices = ", ".join(LLM_LABELS[:-1]) + " or " + LLM_LABELS[-1]
    ids = served.prepare(LLM_PROMPT.format(text=LOVED), 16, None, LLM_SYSTEM.format(choices=choices)).ids
    ids = list(ids) + served.tokenizer.encode(LLM_REPLY, add_special_tokens=False)
    with torch.inference_mode():
        scale = float(served.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits.abs().max())
    lp = log_prob_tol(2 * model_forward_atol(served.model.config, scale, len(ids) + m), served.vocab_size,
                      torch.float64)
    alone = offline_engine.classify(LOVED, model="llm")
    assert_probs_close(list(alone.distribution.values()), list(loved.distribution.values()), 2 * m * lp)


def test_without_the_specialist_offline_the_llm_classifies_and_says_so(offline_engine):
    result = offline_engine.classify(LOVED)
    assert result.generative and result.label == "positive"
    assert "distilbert-sst2 is not on this machine" in result.notes[0]


# --- the tab and its public endpoint -----------------------------------------------------------------------------
def test_classify_endpoint_through_gradio_client_offline(offline_engine):
    import apps.sentiment

    with serving(apps.sentiment.build(offline_engine)) as client:
        result = client.predict(text=LOVED, api_name="/classify")
        assert result["label"] == "positive" and result["generative"]
        assert set(result["distribution"]) == set(LLM_LABELS)
        assert sum(result["distribution"].values()) == pytest.approx(1.0, abs=gamma(3, torch.float64))
        assert "not on this machine" in result["notes"][0]
        with pytest.raises(Exception, match="text is empty"):
            client.predict(text="", api_name="/classify")
        with pytest.raises(Exception, match="must be text, not list"):
            client.predict(text=["a", "list"], api_name="/classify")


def test_batch_table_and_chart_helpers(engine):
    import apps.sentiment

    batch = engine.classify_batch(["good", "bad", "fine"])
    frame = apps.sentiment.counts_frame(batch)
    assert list(frame["label"]) == ["NEGATIVE", "POSITIVE"] and frame["count"].sum() == 3
    path = apps.sentiment.write_csv(batch)
    assert open(path, encoding="utf-8", newline="").read() == batch.to_csv()
    assert isinstance(batch, Batch) and [row[0] for row in batch.rows()] == [1, 2, 3]


def ui_handlers(tab) -> dict:
    """The tab's event functions by name (the UI events are private: no API endpoint to call them through)."""
    return {dep.fn.__name__: dep.fn for dep in tab.fns.values() if dep.fn is not None}


def test_tab_events(engine, tmp_path):
    import gradio as gr

    import apps.sentiment

    handlers = ui_handlers(apps.sentiment.build(engine))
    distribution, pieces, notes, code_engine, code_plain = handlers["classify_ui"](LOVED, "tiny-sst2", True)
    assert "engine.classify(" in code_engine and "AutoModelForSequenceClassification" in code_plain  # Code panel
    assert set(distribution) == {"NEGATIVE", "POSITIVE"} and "".join(p for p, _ in pieces) == LOVED
    assert "tiny-sst2" in notes and "Occlusion" in notes
    assert handlers["classify_ui"](LOVED, "tiny-sst2", False)[1] is None

    upload = tmp_path / "reviews.csv"
    upload.write_text('id,review\n1,good\n2,"bad, really"\n3,\n4,fine\n', encoding="utf-8")
    assert handlers["columns_of"](str(upload)).value == "review"
    no_progress = lambda *args, **kwargs: None  # noqa: E731
    rows, counts, csv_path, _ = handlers["batch_ui"]("", str(upload), "review", "tiny-sst2", progress=no_progress)
    assert [r[:2] for r in rows] == [[1, "good"], [2, "bad, really"], [3, ""], [4, "fine"]]
    assert counts["count"].sum() == 3 and open(csv_path, encoding="utf-8").read().count("\n") == 5
    rows, _, _, _ = handlers["batch_ui"]("one\n\ntwo\n", None, None, "tiny-sst2", progress=no_progress)
    assert [r[1] for r in rows] == ["one", "two"]
    with pytest.raises(gr.Error, match="no column 'text'"):
        handlers["batch_ui"]("", str(upload), "text", "tiny-sst2", progress=no_progress)
    binary = tmp_path / "sheet.csv"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00")
    with pytest.raises(gr.Error, match="binary file"):
        handlers["columns_of"](str(binary))
    with pytest.raises(gr.Error, match="no text to classify"):
        handlers["batch_ui"]("\n \n", None, None, "tiny-sst2", progress=no_progress)
