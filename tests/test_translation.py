"""Translation: the tiny Marian and M2M100 models through the same loading path as opus-mt and m2m100_418M, sentence
splitting and paragraph keeping, routing (pair model, many-language model, pivot, LLM fallback), scores, and the
tab's public endpoints through gradio_client with HF_HUB_OFFLINE=1."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from app_process import serving
from engine import (Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, ModelSpec, Registry, Settings,
                    UnknownModelError)
from engine.core import FAMILY_MODULES
from engine.tasks import translation as mt
from engine.worker import Request

log = logging.getLogger(__name__)

SENTENCES = [
    "The cat is small.", "I see the dog.", "Hello, how are you?", "Thank you very much.",
    "Where is the train station?", "It costs 12 euros.", "The meeting starts at 9 o'clock.",
    "We like the garden very much.", "The old teacher was very happy yesterday.", "Good morning!",
    "She bought the book today.", "I think the river is not cold.", "Do you have the apple?",
    "The quick brown fox jumps over the lazy dog.", "My name is Anna.", "We are going home now.",
    "Tom asked his teacher for advice.", "Is the computer new?", "I don't know.", "The flower is beautiful.",
]


def _spec(name: str, folder: Path, languages: tuple[str, ...], family: str = "marian", **kw) -> ModelSpec:
    task = "text-generation" if family == "causal-lm" else "translation"
    return ModelSpec(name, task, family, f"path:{folder}", languages=languages, **kw)


def make_engine(tmp_path: Path, *specs: ModelSpec, **settings) -> Engine:
    """The built-in registry (every hub model absent: offline) plus ``specs``, on the CPU in fp32."""
    registry = Registry()
    for spec in specs:
        registry.add(spec)
    return Engine(Settings(cache_dir=tmp_path / "cache", offline=True, device="cpu", dtype="float32", **settings),
                  registry)


@pytest.fixture(scope="module")
def tiny_llm_spec(tiny_causal_lm: Path) -> ModelSpec:
    return _spec("tiny-llm", tiny_causal_lm, (), family="causal-lm", chat=True, default=True)


@pytest.fixture(scope="module")
def en_de(tiny_marian: Path, tiny_llm_spec: ModelSpec, tmp_path_factory) -> Engine:
    """The tiny Marian registered in place of opus-mt-en-de, and a tiny chat LLM as the default generator."""
    engine = make_engine(tmp_path_factory.mktemp("en-de"), _spec("opus-mt-en-de", tiny_marian, ("en", "de")),
                         tiny_llm_spec)
    yield engine
    engine.close()


def direct(folder: Path, sentences: list[str], num_beams: int, max_new_tokens: int, **kw) -> list[str]:
    """What transformers gives for the same model and options, without the engine."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_new_tokens, **kw)
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


# --- the specialist model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_beams", [1, 3])
def test_tiny_marian_loads_like_opus_mt_and_matches_transformers(en_de: Engine, tiny_marian: Path,
                                                                 num_beams: int) -> None:
    from transformers import MarianMTModel, MarianTokenizer

    result = en_de.translate("The weather is nice today.", "en", "de", num_beams=num_beams, max_new_tokens=6)
    served = en_de.served("translation", "opus-mt-en-de")
    assert isinstance(served.model, MarianMTModel) and isinstance(served.tokenizer, MarianTokenizer)
    assert served.default_beams == 4  # opus-mt's generation config, read from the folder
    assert result.route == ("en→de via opus-mt-en-de",) and result.models == ("opus-mt-en-de",)
    assert not result.llm and result.notes == () and result.sentences == 1
    assert isinstance(result.text, str) and result.text
    # The beams asked for are the beams used: the engine's text is transformers' text with the same options.
    assert result.text == direct(tiny_marian, ["The weather is nice today."], num_beams, 6)[0]


def test_batched_equals_one_at_a_time(en_de: Engine) -> None:
    text = " ".join(SENTENCES)
    en_de.translate("Warm up.", "en", "de", max_new_tokens=2)
    t0 = time.perf_counter()
    batched = en_de.translate(text, "en", "de", num_beams=2, max_new_tokens=8)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = [en_de.translate(s, "en", "de", num_beams=2, max_new_tokens=8).text for s in SENTENCES]
    t_alone = time.perf_counter() - t0
    log.warning("tiny Marian, %d sentences, 2 beams, 8 tokens: batched %.2f s, one at a time %.2f s",
                len(SENTENCES), t_batched, t_alone)
    assert batched.source_sentences == tuple(SENTENCES)
    assert list(batched.sentences_out) == alone  # fp32: padding changes nothing
    assert batched.text == " ".join(alone)


def test_requests_that_arrive_together_share_forward_passes(en_de: Engine) -> None:
    served = en_de.served("translation", "opus-mt-en-de")
    calls = []
    original = served.translate_batch

    def counting(sentences, job):
        calls.append(len(sentences))
        return original(sentences, job)

    served.translate_batch = counting
    try:
        jobs = [mt.Job(tuple(SENTENCES[i:i + 3]), "en", "de", 1, 4) for i in (0, 3, 6)]
        requests = [Request(job) for job in jobs]
        assert len({served.batch_key(job) for job in jobs}) == 1
        served.run_batch(requests)
        results = [r.result(timeout=60) for r in requests]
    finally:
        del served.translate_batch
    assert calls == [9]  # three requests, nine sentences, one forward pass
    for job, result in zip(jobs, results):
        assert list(result.texts) == [en_de.translate(s, "en", "de", num_beams=1, max_new_tokens=4).text
                                      for s in job.sentences]
    assert served.batch_key(mt.Job(("a",), "en", "de", 2, 4)) != served.batch_key(jobs[0])


def test_cancelled_request_stops_and_others_finish(en_de: Engine) -> None:
    served = en_de.served("translation", "opus-mt-en-de")
    keep, drop = Request(mt.Job(("The cat is small.",), "en", "de", 1, 3)), Request(mt.Job(("Hi.",), "en", "de", 1, 3))
    drop.cancel()
    served.run_batch([keep, drop])
    assert keep.result(timeout=30).texts[0]
    with pytest.raises(Exception, match="cancelled"):
        drop.result(timeout=30)


def test_paragraphs_and_lines_are_kept(en_de: Engine) -> None:
    text = "The cat is small. I see the dog.\nGood morning!\n\n\nWhere is the train station?\n\nThank you."
    result = en_de.translate(text, "en", "de", num_beams=1, max_new_tokens=3)
    assert result.sentences == 5
    paragraphs = result.text.split("\n\n")
    assert [p for p in paragraphs if p.strip()] and len(result.text.split("\n")) == len(text.split("\n"))
    assert result.text.count("\n\n\n") == 1 and result.text.count("\n") == text.count("\n")
    first = result.text.split("\n")[0]
    assert first == " ".join(result.sentences_out[:2])


class FakeTranslator(mt.Seq2SeqTranslator):
    """The served model with a transparent "translation" (upper case, tagged with the target): shows where each
    sentence goes. Everything but the model call is the real class."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.spec, self.device, self.nbytes, self.max_input_tokens, self.default_beams = spec, device, 1, 512, 1
        self.batches: list[int] = []

    def translate_batch(self, sentences, job):
        self.batches.append(len(sentences))
        return [f"[{job.target}] {s.upper()}" for s in sentences], [False] * len(sentences)


def load(spec: ModelSpec, files: Path, engine: Engine) -> FakeTranslator:  # FAMILY_MODULES entry for "fake-mt"
    return FakeTranslator(spec, files, "cpu", torch.float32)


@pytest.fixture()
def fake_engine(tmp_path: Path, monkeypatch, tiny_llm_spec: ModelSpec) -> Engine:
    monkeypatch.setitem(FAMILY_MODULES, "fake-mt", __name__)
    engine = make_engine(tmp_path, _spec("fake-en-zh", tmp_path, ("en", "zh"), family="fake-mt"),
                         _spec("fake-zh-en", tmp_path, ("zh", "en"), family="fake-mt"), tiny_llm_spec)
    yield engine
    engine.close()


def test_each_sentence_is_translated_and_put_back_in_place(fake_engine: Engine) -> None:
    text = ("Dr. Smith arrived at 3.30 p.m. today. He was late!\n  Was he tired? Yes.\n\n"
            + " ".join(SENTENCES[:18]))
    result = fake_engine.translate(text, "en", "zh")
    paragraphs = result.text.split("\n\n")
    assert len(paragraphs) == 2
    # Chinese is written without spaces: sentences on a line are joined directly; indentation stays.
    assert paragraphs[0] == ("[zh] DR. SMITH ARRIVED AT 3.30 P.M. TODAY.[zh] HE WAS LATE!\n"
                             "  [zh] WAS HE TIRED?[zh] YES.")
    assert result.sentences_out == tuple(f"[zh] {s.upper()}" for s in result.source_sentences)
    assert result.source_sentences[4:] == tuple(SENTENCES[:18])
    assert fake_engine.served("translation", "fake-en-zh").batches == [mt.BATCH, 22 - mt.BATCH]


def test_chinese_and_japanese_punctuation_split(fake_engine: Engine) -> None:
    result = fake_engine.translate("今天天气很好。我们去公园吧！你来吗？\n\n好的。", "zh", "en")
    assert result.source_sentences == ("今天天气很好。", "我们去公园吧！", "你来吗？", "好的。")
    assert result.text == "[en] 今天天气很好。 [en] 我们去公园吧！ [en] 你来吗？\n\n[en] 好的。"
    detected = fake_engine.translate("今天天气很好。我们去公园吧！", "auto", "en")
    assert detected.source_lang == "zh" and "detected as Chinese" in detected.notes[0]


def test_translate_lines_keeps_one_output_per_line(fake_engine: Engine) -> None:
    lines = ["", "The cat is small. The dog is big.", "", "Hello,\nworld.", "  "]
    out, result = mt.translate_lines(fake_engine, lines, "en", "zh")
    assert out == ["", "[zh] THE CAT IS SMALL.[zh] THE DOG IS BIG.", "", "[zh] HELLO, WORLD.", ""]
    assert result.route == ("en→zh via fake-en-zh",)


# --- routing -----------------------------------------------------------------------------------------------------


def test_auto_picks_the_pair_model(en_de: Engine) -> None:
    result = en_de.translate("The cat is small.", "auto", "de", "auto", max_new_tokens=3)
    assert result.route == ("en→de via opus-mt-en-de",)
    assert result.source_lang == "en" and result.notes[0].startswith("source language detected as English")


def test_many_language_model_when_no_pair_model(tmp_path: Path, tiny_m2m100: Path, tiny_llm_spec) -> None:
    engine = make_engine(tmp_path, _spec("m2m100_418M", tiny_m2m100, (), family="m2m100"), tiny_llm_spec)
    result = engine.translate("Die Katze ist klein.", "de", "en", num_beams=2, max_new_tokens=5)
    assert result.route == ("de→en via m2m100_418M",)
    assert "used m2m100_418M; skipped opus-mt-de-en, nllb-200-distilled-600M: not on this machine" in result.notes
    # The target language is forced as the first token, as m2m100 needs.
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_m2m100)
    tokenizer.src_lang = "de"
    forced = tokenizer.get_lang_id("en")
    with torch.inference_mode():
        model = engine.served("translation", "m2m100_418M").model
        out = model.generate(**tokenizer(["Die Katze ist klein."], return_tensors="pt"), num_beams=2,
                             max_new_tokens=5, forced_bos_token_id=forced)
    assert out[0, 1].item() == forced
    assert result.text == tokenizer.decode(out[0], skip_special_tokens=True).strip()
    engine.close()


def test_pivot_through_english_when_only_two_legs_exist(tmp_path: Path, tiny_marian: Path,
                                                          tiny_marian_de_en: Path, tiny_llm_spec) -> None:
    # The weights are random, so the en→de model can stand in for en→fr: only the routing is under test.
    engine = make_engine(tmp_path, _spec("opus-mt-de-en", tiny_marian_de_en, ("de", "en")),
                         _spec("opus-mt-en-fr", tiny_marian, ("en", "fr")), tiny_llm_spec)
    result = engine.translate("Die Katze ist klein. Der Hund ist groß.", "de", "fr", max_new_tokens=4,
                              num_beams=1)
    assert result.route == ("de→en via opus-mt-de-en", "en→fr via opus-mt-en-fr")
    assert result.models == ("opus-mt-de-en", "opus-mt-en-fr") and not result.llm
    assert any(n.startswith("pivoted through English") for n in result.notes)
    first = engine.translate("Die Katze ist klein. Der Hund ist groß.", "de", "en", "opus-mt-de-en",
                             max_new_tokens=4, num_beams=1)
    second = [engine.translate(s, "en", "fr", "opus-mt-en-fr", max_new_tokens=4, num_beams=1).text
              for s in first.sentences_out]
    assert list(result.sentences_out) == second
    engine.close()


def test_llm_stands_in_offline_and_says_so(tmp_path: Path, tiny_llm_spec) -> None:
    engine = make_engine(tmp_path, tiny_llm_spec)  # no Marian on disk; the hub is off
    t0 = time.perf_counter()
    result = engine.translate("The weather is nice today. Where is the station?", "en", "de")
    assert time.perf_counter() - t0 < 30  # the offline checks fail fast
    assert result.llm and result.route == ("en→de via the instruct LLM tiny-llm (by prompt)",)
    assert any("specialist model not available offline" in n and "opus-mt-en-de" in n
               and "the instruct LLM tiny-llm translated by prompt" in n for n in result.notes)
    assert result.sentences == 2 and isinstance(result.text, str)
    engine.close()


def test_explicit_choices(en_de: Engine) -> None:
    llm = en_de.translate("The cat is small.", "en", "de", "llm", max_new_tokens=4)
    assert llm.llm and llm.models == ("tiny-llm",) and not any("specialist" in n for n in llm.notes)
    by_name = en_de.translate("The cat is small.", "en", "de", "tiny-llm", max_new_tokens=4)
    assert by_name.route == llm.route
    with pytest.raises(InvalidOptionsError, match="opus-mt-en-de does not translate English into French"):
        en_de.translate("The cat is small.", "en", "fr", "opus-mt-en-de")
    with pytest.raises(UnknownModelError, match="Available: auto, opus-mt-en-de"):
        en_de.translate("The cat is small.", "en", "de", "opus-mt-xx")
    with pytest.raises(InvalidOptionsError, match="not a translation model"):
        en_de.translate("The cat is small.", "en", "de", "whisper-base")


def test_unavailable_explicit_model_says_how_to_get_it(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    with pytest.raises(Exception, match="not on this machine.*offline"):
        engine.translate("The cat is small.", "en", "fr", "opus-mt-en-fr")


def test_llm_prompt_and_answer_cleaning() -> None:
    assert mt.llm_prompt("Hello.", "en", "de") == ("Translate the following English text into German. Reply with "
                                                    "the translation only.\n\nHello.")
    assert mt.clean_llm_output('Translation: "Hallo."\n\nThis means hello.') == "Hallo."
    assert mt.clean_llm_output("Here is the translation:\n\nDas Wetter ist schön.") == "Das Wetter ist schön."
    assert mt.clean_llm_output("  Guten Tag!  ") == "Guten Tag!"
    assert mt.clean_llm_output("\n\n") == ""


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_gets_clear_messages(tmp_path: Path, en_de: Engine) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        en_de.translate("   ", "en", "de")
    with pytest.raises(InvalidOptionsError, match="Unknown target language 'xx'. Known languages: en"):
        en_de.translate("The cat.", "en", "xx")
    with pytest.raises(InvalidOptionsError, match="both German"):
        en_de.translate("Die Katze.", "de", "de")
    with pytest.raises(InvalidOptionsError, match="num_beams must be a whole number from 1 to 8"):
        en_de.translate("The cat.", "en", "de", num_beams=9)
    with pytest.raises(InvalidInputError, match="Could not tell the source language"):
        en_de.translate("12345 67", "auto", "de")
    small = make_engine(tmp_path, max_chars=50)
    with pytest.raises(InputTooLargeError, match="the limit is 50"):
        small.translate("The cat is small. " * 10, "en", "de")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Grüße aus Köln".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        mt.read_text_file(bad, 10_000)
    good = tmp_path / "good.txt"
    good.write_text("\ufeffGrüße aus Köln.", encoding="utf-8")
    assert mt.read_text_file(good, 10_000) == "Grüße aus Köln."
    with pytest.raises(InputTooLargeError, match="upload limit"):
        mt.read_text_file(good, 5)


# --- the tab: flows and public endpoints ---------------------------------------------------------------------------


def test_test_set_upload_is_translated_and_scored(en_de: Engine, tmp_path: Path) -> None:
    from apps import translation as tab

    pairs = tmp_path / "test.tsv"
    pairs.write_text("The cat is small.\tDie Katze ist klein.\nGood morning!\tGuten Morgen!\n", encoding="utf-8")
    markdown, rows, hyp_file = tab.run_test_set(en_de, str(pairs), None, "en", "de", "auto", 1)
    hyps = Path(hyp_file).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 2 and len(rows) == 2 and "Translated 2 sources" in markdown
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in markdown
    assert rows == sorted(rows, key=lambda r: r[1])  # worst first
    sources, refs = tmp_path / "src.txt", tmp_path / "ref.txt"
    sources.write_text("a\nb\nc\n", encoding="utf-8")
    refs.write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="3 sources but 2 references: line.s. 3 of the sources"):
        tab.run_test_set(en_de, str(sources), str(refs), "en", "de", "auto", 1)
    scored = tmp_path / "scored.jsonl"
    scored.write_text(json.dumps({"src": "a", "ref": "Die Katze.", "hyp": "Die Katze."}) + "\n", encoding="utf-8")
    markdown, rows, _ = tab.run_test_set(en_de, str(scored), None, "en", "de", "auto", 1)
    assert "nothing was translated" in markdown and rows[0][1] == 100.0


def test_side_by_side_and_download(en_de: Engine) -> None:
    from apps import translation as tab

    r = tab.run_translation(en_de, "The cat is small.\n\nGood morning!", "en", "de", "auto", 1, True, "letter")
    assert not r["main"].llm and r["other"].llm
    assert r["headers"][-1] == "the LLM's translation" and len(r["rows"][0]) == 4
    assert Path(r["download"]).name == "letter.de.txt"
    assert Path(r["download"]).read_text(encoding="utf-8") == r["main"].text + "\n"


@pytest.fixture(scope="module")
def client(en_de: Engine):
    import gradio as gr
    from apps import translation as tab

    with gr.Blocks() as demo:
        tab.build(en_de).render()
    with serving(demo) as client:
        yield client


def test_translate_endpoint(client, en_de: Engine) -> None:
    answer = client.predict(text="The weather is nice today.", source_lang="en", target_lang="de",
                            api_name="/translate")
    assert answer["route"] == ["en→de via opus-mt-en-de"] and isinstance(answer["text"], str)
    fallback = client.predict(text="The weather is nice today.", source_lang="en", target_lang="fr",
                              model="auto", api_name="/translate")
    assert fallback["llm"] and any("specialist model not available offline" in n for n in fallback["notes"])
    with pytest.raises(Exception, match="The text to translate is empty"):
        client.predict(text="", source_lang="en", target_lang="de", api_name="/translate")
    with pytest.raises(Exception, match="does not translate English into French"):
        client.predict(text="Hi.", source_lang="en", target_lang="fr", model="opus-mt-en-de", api_name="/translate")


def test_score_endpoint_equals_sacrebleu_command_line(client, tmp_path: Path) -> None:
    hyps = ["The cat sat on the mat.", "It is raining today in Berlin.", "He likes green apples."]
    refs = ["The cat sat on a mat.", "Today it rains in Berlin.", "He likes green apples very much."]
    answer = client.predict(hypotheses="\n".join(hyps), references="\n".join(refs), target_lang="en",
                            api_name="/score_translation")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
               "-m", "bleu", "chrf", "ter", "--chrf-word-order", "2", "-tok", "13a", "-w", "4", "-f", "json"]
    cli = subprocess.run(command, capture_output=True, text=True, check=True)
    expected = {item["name"]: item for item in json.loads(cli.stdout)}
    assert answer["bleu"] == pytest.approx(expected["BLEU"]["score"], abs=2e-4)
    assert answer["chrf"] == pytest.approx(expected["chrF2++"]["score"], abs=2e-4)
    assert answer["ter"] == pytest.approx(expected["TER"]["score"], abs=2e-4)
    for name in ("BLEU", "chrF2++", "TER"):
        assert answer["signatures"][name] == expected[name]["signature"]
    assert answer["signature"] == answer["signatures"]["BLEU"] and answer["tokenizer"] == "13a"
    chrfs = [row["chrf"] for row in answer["per_sentence"]]
    assert chrfs == sorted(chrfs) and sorted(row["line"] for row in answer["per_sentence"]) == [1, 2, 3]
    single = client.predict(hypotheses="The cat sat on the mat.", references="The cat sat on a mat.",
                            target_lang="en", api_name="/score_translation")
    assert any("Only one sentence" in w for w in single["warnings"])
    with pytest.raises(Exception, match="2 hypotheses but 1 reference: line 2 of the hypotheses has no reference"):
        client.predict(hypotheses="a\nb", references="a", target_lang="en", api_name="/score_translation")
    zh = client.predict(hypotheses="今天天气很好。", references="今天天气不错。", target_lang="zh",
                        api_name="/score_translation")
    assert zh["tokenizer"] == "zh" and "tok:zh" in zh["signature"]


@pytest.mark.slow
def test_smoke_translate_offline_falls_back_to_smollm2(tmp_path: Path) -> None:
    """The smoke script's call against the shipped registry: no Marian on disk, the hub off, so the packaged SmolLM2
    answers and the answer says so. Uses the machine's model cache (the packaged conversion happens once)."""
    import gradio as gr

    from apps import translation as tab

    engine = Engine(Settings(offline=True))
    with gr.Blocks() as demo:
        tab.build(engine).render()
    try:
        with serving(demo) as client:
            engine.served("text-generation")  # load first, so the time below is the translation's
            t0 = time.perf_counter()
            answer = client.predict(text="The weather is nice today.", source_lang="en", target_lang="de",
                                    api_name="/translate")
            log.warning("SmolLM2-135M fallback, one sentence en→de: %.1f s: %r", time.perf_counter() - t0,
                        answer["text"])
    finally:
        engine.close()
    assert answer["llm"] and answer["model"] == "SmolLM2-135M-Instruct" and answer["text"].strip()
    assert answer["route"] == ["en→de via the instruct LLM SmolLM2-135M-Instruct (by prompt)"]
    assert any("specialist model not available offline" in n and "opus-mt-en-de" in n for n in answer["notes"])


def test_sentences_beyond_the_input_limit_are_cut_and_said(en_de: Engine) -> None:
    result = en_de.translate("the cat and the dog " * 150, "en", "de", num_beams=1, max_new_tokens=2)
    assert result.sentences == 1 and result.text
    assert any("longer than opus-mt-en-de's input limit of 512 tokens and were cut" in n for n in result.notes)
