"""Question answering: the span logic on a tiny random DistilBERT (windows, offsets, top-k, no-answer), checked
against an independent brute force over windows; batching; bad input; the generative alternative and the offline
fallback on the packaged SmolLM2; ``/answer`` through gradio_client."""
from __future__ import annotations

import math
import random

import pytest
import torch

from app_process import serving
import tiny_models
from engine import Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, ModelSpec, Registry, Settings
from engine.tasks.qa import MAX_LENGTH, STRIDE, can_say_no_answer, find_in_context
from tolerances import model_forward_atol

EIFFEL_Q = "When was the Eiffel Tower completed?"
EIFFEL_C = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889 as the entrance arch "
            "to the World's Fair.")
SENTENCES = tiny_models.corpus("en")


def long_context(seed: int, n: int = 120) -> str:
    return " ".join(random.Random(seed).sample(SENTENCES, n))


@pytest.fixture(scope="module")
def engine(tiny_distilbert_qa, tmp_path_factory):
    registry = Registry()
    registry.add(ModelSpec("tiny-qa", "question-answering", "extractive-qa", f"path:{tiny_distilbert_qa}",
                           default=True))
    registry.add(ModelSpec("tiny-qa-squad2", "question-answering", "extractive-qa", f"path:{tiny_distilbert_qa}"))
    # on the CPU in fp32 like the brute force it is checked against (on a GPU "auto" would pick bf16)
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, device="cpu", dtype="float32",
                             max_chars=20_000), registry)
    yield engine
    engine.close()


def score_rtol(folder, scale: float) -> float:
    """How far a span's score may move between two float32 evaluations of the tiny model (the engine's batched
    windows, a pass by hand): each logit within ``diff`` (twice ``tolerances.forward_atol``), so each float64 softmax
    within a factor exp(+-2 diff), and p_start * p_end within exp(+-4 diff)."""
    from transformers import AutoConfig

    diff = 2 * model_forward_atol(AutoConfig.from_pretrained(folder), scale, MAX_LENGTH)
    return math.expm1(4 * diff)


# --- an independent brute force: windows built by hand, one forward pass each, every span scored in a loop ------
def brute_force(folder, question: str, context: str, max_answer_tokens: int) -> tuple[float, int, int, int, float]:
    """(score, char start, char end, window) of the best span, computed without the engine, and the largest |logit|
    seen (the scale of the rounding bound)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    q_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    c = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    room = MAX_LENGTH - len(q_ids) - 3  # [CLS] q [SEP] c [SEP]
    best, start, w, scale = (-1.0, 0, 0, 0), 0, 0, 0.0
    while True:
        ids = c["input_ids"][start:start + room]
        offsets = c["offset_mapping"][start:start + room]
        full = [tokenizer.cls_token_id, *q_ids, tokenizer.sep_token_id, *ids, tokenizer.sep_token_id]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([full]))
        first = len(q_ids) + 2  # index of the first context token
        keep = [0] + list(range(first, first + len(ids)))  # [CLS] and the context
        scale = max(scale, float(out.start_logits.abs().max()), float(out.end_logits.abs().max()))
        p_start = torch.softmax(out.start_logits[0, keep].double(), -1).numpy()[1:]
        p_end = torch.softmax(out.end_logits[0, keep].double(), -1).numpy()[1:]
        for s in range(len(ids)):
            for e in range(s, min(len(ids), s + max_answer_tokens)):
                score = p_start[s] * p_end[e]
                if score > best[0]:
                    best = (score, offsets[s][0], offsets[e][1], w)
        if start + room >= len(c["input_ids"]):
            return (*best, scale)
        start += room - STRIDE
        w += 1


def first_window_end(folder, question: str, context: str) -> int:
    """The character where the first window's context ends."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    room = MAX_LENGTH - len(tokenizer(question, add_special_tokens=False)["input_ids"]) - 3
    return tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][room - 1][1]


# --- spans -------------------------------------------------------------------------------------------------------
def test_answer_is_exactly_the_context_text_it_points_at(engine):
    result = engine.answer(EIFFEL_Q, EIFFEL_C, top_k=5)
    assert result.has_answer and result.model == "tiny-qa" and not result.generative
    assert EIFFEL_C[result.start:result.end] == result.text and result.text
    assert result.windows == 1 and 1 <= len(result.candidates) <= 5
    assert (result.text, result.score) == (result.candidates[0].text, result.candidates[0].score)
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    for c in result.candidates:
        assert EIFFEL_C[c.start:c.end] == c.text
    assert len({(c.start, c.end) for c in result.candidates}) == len(result.candidates)  # no span twice


def test_context_with_leading_spaces_keeps_offsets_into_the_original(engine):
    context = "\n\n   " + EIFFEL_C + "   \n"
    result = engine.answer(EIFFEL_Q, context)
    assert context[result.start:result.end] == result.text


def test_best_span_in_a_later_window_matches_a_brute_force(engine, tiny_distilbert_qa):
    """Long contexts read in several windows: the engine's best span equals a by-hand computation over hand-built
    windows, and at least one of them lies entirely beyond the first window."""
    question, later = "Who wrote Hamlet?", 0
    for seed in range(6):
        context = long_context(seed)
        result = engine.answer(question, context, top_k=3, max_answer_tokens=12)
        score, start, end, window, scale = brute_force(tiny_distilbert_qa, question, context, 12)
        assert result.windows >= 3
        assert (result.start, result.end) == (start, end)
        assert result.score == pytest.approx(score, rel=score_rtol(tiny_distilbert_qa, scale))
        assert context[result.start:result.end] == result.text
        assert result.candidates[0].window == window
        if result.start >= first_window_end(tiny_distilbert_qa, question, context):
            later += 1
    assert later >= 1, "no context had its answer beyond the first window; use more seeds"


def test_spans_respect_the_maximum_answer_length(engine, tiny_distilbert_qa):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert_qa)
    result = engine.answer("Who?", long_context(1, 40), top_k=10, max_answer_tokens=3)
    for c in result.candidates:
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 3


def test_batched_answers_equal_one_at_a_time(engine, tiny_distilbert_qa):
    pairs = [(EIFFEL_Q, EIFFEL_C), ("Who wrote Hamlet?", long_context(3)), ("What is the capital?", SENTENCES[3]),
             ("Where is the cat?", long_context(4, 30)), ("How many legs?", " ".join(SENTENCES[-8:]))]
    together = engine.answer_batch(pairs, top_k=3)
    for (q, c), batched in zip(pairs, together):
        alone = engine.answer(q, c, top_k=3)
        assert [(s.start, s.end) for s in batched.candidates] == [(s.start, s.end) for s in alone.candidates]
        scale = brute_force(tiny_distilbert_qa, q, c, 1)[4]
        assert batched.score == pytest.approx(alone.score, rel=score_rtol(tiny_distilbert_qa, scale))


def test_concurrent_requests_share_a_batch_and_get_their_own_answers(engine):
    from concurrent.futures import ThreadPoolExecutor

    pairs = [("Who?", long_context(i, 10)) for i in range(8)]
    alone = [engine.answer(q, c) for q, c in pairs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: engine.answer(*p), pairs))
    assert [(a.start, a.end, a.text) for a in together] == [(a.start, a.end, a.text) for a in alone]


# --- no answer -------------------------------------------------------------------------------------------------
def test_squad2_models_are_recognised_by_name():
    assert can_say_no_answer(ModelSpec("roberta-base-squad2", "question-answering", "extractive-qa",
                                       "hub:deepset/roberta-base-squad2"))
    assert not can_say_no_answer(ModelSpec("distilbert-base-cased-distilled-squad", "question-answering",
                                           "extractive-qa", "hub:distilbert/distilbert-base-cased-distilled-squad"))


def test_no_answer_threshold(engine):
    always = engine.answer(EIFFEL_Q, EIFFEL_C, no_answer_threshold=-math.inf)
    assert not always.has_answer and always.text == "" and always.start is None and always.candidates
    assert always.score == always.null_score and 0 < always.null_score < 1
    assert any("No answer" in n for n in always.notes)
    never = engine.answer(EIFFEL_Q, EIFFEL_C, no_answer_threshold=math.inf)
    assert never.has_answer
    # SQuAD 1.1 models never abstain by default; SQuAD 2.0 models compare with the null score at threshold 0
    assert engine.answer(EIFFEL_Q, EIFFEL_C).has_answer
    squad2 = engine.answer(EIFFEL_Q, EIFFEL_C, "tiny-qa-squad2")
    explicit = engine.answer(EIFFEL_Q, EIFFEL_C, "tiny-qa-squad2", no_answer_threshold=0.0)
    assert squad2.has_answer == explicit.has_answer


# --- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("question, context, error, words", [
    ("", EIFFEL_C, InvalidInputError, "question is empty"),
    ("   ", EIFFEL_C, InvalidInputError, "question is empty"),
    (EIFFEL_Q, "", InvalidInputError, "context is empty"),
    (EIFFEL_Q, "\n \t", InvalidInputError, "context is empty"),
    (EIFFEL_Q, "x" * 20_001, InputTooLargeError, "limit is 20,000"),
    (EIFFEL_Q, None, InvalidInputError, "must be text"),
    (EIFFEL_Q, "a\x00b", InvalidInputError, "binary"),
])
def test_bad_input_is_a_clear_message(engine, question, context, error, words):
    with pytest.raises(error, match=words):
        engine.answer(question, context)


def test_a_question_too_long_for_the_window_is_refused(engine):
    with pytest.raises(InvalidInputError, match="question is .* tokens long"):
        engine.answer(" ".join("123456789" * 30) + "?", EIFFEL_C)  # 271 tokens, 540 characters


@pytest.mark.parametrize("options", [dict(top_k=0), dict(top_k=21), dict(max_answer_tokens=0),
                                     dict(no_answer_threshold=float("nan"))])
def test_bad_options(engine, options):
    with pytest.raises(InvalidOptionsError):
        engine.answer(EIFFEL_Q, EIFFEL_C, **options)


# --- finding a generated answer in the context -----------------------------------------------------------------
@pytest.mark.parametrize("answer, expected", [
    ("1889", "1889"),
    ("in 1889.", "in 1889"),
    ("IT WAS COMPLETED   in 1889", "It was completed in 1889"),
    ('"Paris"', "Paris"),
    ("the world's fair", "the World's Fair"),
])
def test_generated_answers_are_found_in_the_context(answer, expected):
    span = find_in_context(answer, EIFFEL_C)
    assert span is not None and EIFFEL_C[span[0]:span[1]] == expected


@pytest.mark.parametrize("answer", ["1900", "", "  ", "...", "The Eiffel Tower was completed in 1889."])
def test_answers_not_in_the_context(answer):
    assert find_in_context(answer, EIFFEL_C) is None


def test_whitespace_runs_in_the_context_map_back():
    context = "Built in\n\n  1889   by Gustave Eiffel."
    span = find_in_context("in 1889 by", context)
    assert context[span[0]:span[1]] == "in\n\n  1889   by"


# --- the generative alternative ----------------------------------------------------------------------------------
def test_llm_answers_the_eiffel_question_from_the_context(offline_engine):
    result = offline_engine.answer(EIFFEL_Q, EIFFEL_C, model="llm")
    assert result.generative and result.model == "SmolLM2-135M-Instruct" and result.candidates == ()
    assert "1889" in result.text
    assert result.in_context and EIFFEL_C[result.start:result.end] == result.text
    assert 0 < result.score <= 1
    assert any("occurs in the context" in n for n in result.notes)


def test_without_the_specialist_offline_the_llm_answers_and_says_so(offline_engine):
    result = offline_engine.answer(EIFFEL_Q, EIFFEL_C)
    assert result.generative and "1889" in result.text
    assert "distilbert-base-cased-distilled-squad is not on this machine" in result.notes[0]


def test_llm_answer_that_is_not_in_the_context_says_so(offline_engine):
    result = offline_engine.answer("What colour is the tower?", "The tower is in Paris.", model="llm")
    assert result.generative
    if not result.in_context:  # what a 135M model says varies; whichever it is, the result must say it
        assert result.start is None and any("does not occur" in n or "no answer" in n for n in result.notes)
    else:
        assert "The tower is in Paris."[result.start:result.end] == result.text


# --- the tab and its public endpoint -----------------------------------------------------------------------------
def test_answer_endpoint_through_gradio_client_offline(offline_engine):
    import apps.qa

    with serving(apps.qa.build(offline_engine)) as client:
        result = client.predict(question=EIFFEL_Q, context=EIFFEL_C, api_name="/answer")
        assert "1889" in result["answer"] and result["generative"] and result["model"] == "SmolLM2-135M-Instruct"
        assert EIFFEL_C[result["start"]:result["end"]] == result["answer"] and 0 < result["score"] <= 1
        assert "not on this machine" in result["notes"][0]
        with pytest.raises(Exception, match="question is empty"):
            client.predict(question=" ", context=EIFFEL_C, api_name="/answer")


def test_tab_helpers_highlight_the_answer(engine):
    import apps.qa

    result = engine.answer(EIFFEL_Q, EIFFEL_C, top_k=3)
    pieces = apps.qa.highlighted(EIFFEL_C, result)
    assert "".join(p for p, _ in pieces) == EIFFEL_C
    assert (result.text, "answer") in pieces
    rows = apps.qa.candidate_rows(result)
    assert [r[1] for r in rows] == [c.text for c in result.candidates] and rows[0][0] == 1


def test_context_upload(tmp_path):
    import apps.qa

    good = tmp_path / "context.md"
    good.write_text("# Notes\nÉiffel, 1889.", encoding="utf-8")
    assert apps.qa.read_context_file(str(good), 10_000) == "# Notes\nÉiffel, 1889."
    bad = tmp_path / "binary.txt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfa")
    with pytest.raises(InvalidInputError, match="binary file"):
        apps.qa.read_context_file(str(bad), 10_000)
    with pytest.raises(InputTooLargeError):
        apps.qa.read_context_file(str(good), 5)
    with pytest.raises(InvalidInputError, match="not a .txt or .md"):
        apps.qa.read_context_file(str(tmp_path / "x.pdf"), 10)


def ui_handlers(tab) -> dict:
    """The tab's event functions by name (the UI events are private: no API endpoint to call them through)."""
    return {dep.fn.__name__: dep.fn for dep in tab.fns.values() if dep.fn is not None}


def test_tab_answer_event(engine):
    import apps.qa

    handlers = ui_handlers(apps.qa.build(engine))
    summary, pieces, rows, code_engine, code_plain = handlers["answer_ui"](EIFFEL_Q, EIFFEL_C, "tiny-qa", 3, False,
                                                                          0.0)
    assert "tiny-qa (extractive)" in summary and "".join(p for p, _ in pieces) == EIFFEL_C and len(rows) == 3
    assert "engine.answer(" in code_engine and "AutoModelForQuestionAnswering" in code_plain  # the Code panel
    summary, *_ = handlers["answer_ui"](EIFFEL_Q, EIFFEL_C, "tiny-qa", 3, True, -100.0)
    assert "No answer" in summary
    with pytest.raises(Exception, match="context is empty"):
        handlers["answer_ui"](EIFFEL_Q, "", "tiny-qa", 3, False, 0.0)
    with pytest.raises(Exception, match="Unknown model 'gpt-9'"):
        handlers["answer_ui"](EIFFEL_Q, EIFFEL_C, "gpt-9", 3, False, 0.0)
