"""The Translation tab: specialist encoder-decoders next to the instruct LLM, and sacrebleu scores.

Public API (for scripts, through ``gradio_client``):

- ``/translate(text, source_lang="auto", target_lang="de", model="auto")`` -> the translation, the route taken and
  notes on it (e.g. that the LLM stood in for a specialist model that is not on this machine).
- ``/score_translation(hypotheses, references, target_lang="en")`` -> corpus BLEU, chrF++ and TER with their sacrebleu
  signatures, the tokenizer, warnings and the per-sentence chrF++ table (one line per sentence in both texts).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import Engine, InvalidInputError
from engine import codegen, scoring
from engine.tasks import translation as mt

from .code_panel import code_panel, code_values
from .common import DOWNLOADS, model_work, user_errors
from .i18n import t
from .loading import ensure_loaded

log = logging.getLogger(__name__)

# the intro is in apps/i18n.py ("translation.intro"), in English and Chinese
EXAMPLES = [  # (text, from, to)
    ("The weather is nice today. We are going to the park.", "en", "de"),
    ("I ate a biscuit and drank a cup of tea.", "en", "zh"),
    ("我 吃了一个 饼干。", "zh", "en"),
    ("Das Wetter ist heute schön.", "de", "en"),
]
SENTENCE_HEADERS = ["#", "source sentence", "translation"]
SCORE_HEADERS = ["line", "chrF++", "hypothesis", "reference"]


# --- presenting results (plain functions, no gradio) ------------------------------------------------------------


def language_choices(engine: Engine, auto: bool = False) -> list[tuple[str, str]]:
    choices = [(f"{name} ({code})", code) for code, name in mt.known_languages(engine).items()]
    return ([("Detect automatically", mt.AUTO)] if auto else []) + choices


def model_choices(engine: Engine) -> list[tuple[str, str]]:
    llm = engine.registry.default("text-generation").name
    choices = [("auto: the best model available", mt.AUTO), (f"the instruct LLM by prompt ({llm})", mt.LLM)]
    for spec in engine.registry.for_task(mt.TASK):
        what = "→".join(spec.languages) if spec.family not in mt.MANY_LANGUAGE_FAMILIES else "many languages"
        choices.append((f"{spec.name} ({what})", spec.name))
    return choices


def translation_dict(t: mt.Translation) -> dict[str, Any]:
    """What ``/translate`` returns."""
    return {"text": t.text, "source_lang": t.source_lang, "target_lang": t.target_lang, "model": t.model,
            "route": list(t.route), "notes": list(t.notes), "sentences": t.sentences, "llm": t.llm,
            "seconds": round(t.seconds, 3)}


def translation_markdown(t: mt.Translation, label: str = "") -> str:
    lines = [f"{label}**{' → '.join(t.route)}** · {t.sentences} sentence(s) in {t.seconds:.2f} s "
             f"({mt.language_name(t.source_lang)} → {mt.language_name(t.target_lang)})"]
    lines += [f"- {note}" for note in t.notes]
    return "\n".join(lines)


def sentence_rows(main: mt.Translation, other: mt.Translation | None = None) -> list[list]:
    rows = []
    for i, (source, text) in enumerate(main.pairs()):
        row = [i + 1, source, text]
        if other is not None:
            row.append(other.sentences_out[i] if i < len(other.sentences_out) else "")
        rows.append(row)
    return rows


def report_dict(report: scoring.ScoreReport) -> dict[str, Any]:
    """What ``/score_translation`` returns."""
    return {
        "bleu": round(report.bleu.score, 4), "chrf": round(report.chrf.score, 4), "ter": round(report.ter.score, 4),
        "signatures": {m.name: m.signature for m in report.metrics}, "signature": report.bleu.signature,
        "bleu_detail": report.bleu.detail, "tokenizer": report.tokenizer, "target_lang": report.target_lang,
        "sentences": report.n_sentences, "warnings": list(report.warnings),
        "per_sentence": [{"line": s.index + 1, "chrf": round(s.chrf, 4), "hypothesis": s.hypothesis,
                          "reference": s.reference} for s in report.sentences],
    }


def report_markdown(report: scoring.ScoreReport, preamble: str = "") -> str:
    m = report.metrics
    lines = [preamble] if preamble else []
    lines += ["| metric | score | |", "| --- | ---: | --- |",
              f"| BLEU | {m[0].score:.2f} | higher is better; n-gram precisions {m[0].detail} |",
              f"| {m[1].name} | {m[1].score:.2f} | higher is better; character and word n-gram F-score |",
              f"| TER | {m[2].score:.2f} | lower is better; edits per reference word |", "",
              f"{report.n_sentences} sentence(s), BLEU tokenizer `{report.tokenizer}` for target "
              f"`{report.target_lang}`. Signatures (quote them with the scores):"]
    lines += [f"- {metric.name}: `{metric.signature}`" for metric in m]
    lines += [f"\n⚠️ {warning}" for warning in report.warnings]
    return "\n".join(lines)


def score_rows(report: scoring.ScoreReport) -> list[list]:
    return [[s.index + 1, round(s.chrf, 2), s.hypothesis, s.reference] for s in report.sentences]


def write_download(text: str, stem: str, target: str) -> str:
    """The translation as a UTF-8 file the browser can download."""
    return DOWNLOADS.write_text(f"{stem or 'translation'}.{target}.txt", text if text.endswith("\n") else text + "\n")


def score_texts(hypotheses: str, references: str, target_lang: str) -> scoring.ScoreReport:
    """Score pasted texts, one sentence per line."""
    if not isinstance(references, str) or not references.strip():
        raise InvalidInputError("Paste the references, one per line, in the same order as the hypotheses.")
    if not isinstance(hypotheses, str) or not hypotheses.strip():
        raise InvalidInputError("There are no hypotheses: paste them, one per line, or translate something first.")
    return scoring.score(scoring.parse_lines(hypotheses), scoring.parse_lines(references), target_lang)


def read_test_set(pairs_path: str, references_path: str | None, max_bytes: int) -> scoring.ParallelText:
    """A test set from a TSV/JSONL file, or from two plain-line files (sources and references)."""
    def data(path: str) -> bytes:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise InvalidInputError(f"{Path(path).name} has {size:,} bytes; the upload limit is {max_bytes:,}.")
        return Path(path).read_bytes()

    if not references_path:
        return scoring.parse_pairs_file(data(pairs_path), Path(pairs_path).name)
    sources = scoring.read_lines_file(data(pairs_path), Path(pairs_path).name)
    references = scoring.read_lines_file(data(references_path), Path(references_path).name)
    if len(sources) != len(references):
        n, m = len(sources), len(references)
        side, partner = ("sources", "reference") if n > m else ("references", "source")
        extra = range(min(n, m) + 1, max(n, m) + 1)
        raise InvalidInputError(f"{n} sources but {m} references: line(s) {scoring.describe_lines(extra)} of the "
                                f"{side} have no {partner}. Give exactly one reference per source, in order.")
    return scoring.ParallelText(tuple(sources), (tuple(references),), None)


def _progress(progress: gr.Progress | None, label: str = "") -> Callable[[float, str], None] | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(fraction, desc=f"{label}{message}")


# --- the flows behind the buttons (plain values in and out, so tests can call them) ---------------------------


def run_translation(engine: Engine, text: str, source_lang: str, target_lang: str, model: str, num_beams: float,
                    side_by_side: bool, stem: str = "",
                    progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Translate for the page: the main translation, optionally the LLM's next to it, and what to show."""
    beams = int(num_beams or 0) or None
    main = engine.translate(text, source_lang, target_lang, model or mt.AUTO, num_beams=beams, progress=progress)
    other = None
    if side_by_side and not main.llm:
        other = engine.translate(text, main.source_lang, main.target_lang, mt.LLM, progress=progress)
    markdown = translation_markdown(main)
    if other is not None:
        markdown += "\n\n" + translation_markdown(other, "Side by side: ")
    elif side_by_side:
        markdown += "\n\nThe translation above already came from the instruct LLM."
    return {"main": main, "other": other, "markdown": markdown, "rows": sentence_rows(main, other),
            "headers": SENTENCE_HEADERS + (["the LLM's translation"] if other is not None else []),
            "download": write_download(main.text, stem, main.target_lang)}


def run_test_set(engine: Engine, pairs_path: str | None, references_path: str | None, source_lang: str,
                 target_lang: str, model: str, num_beams: float,
                 progress: Callable[[float, str], None] | None = None) -> tuple[str, list[list], str]:
    """Score an uploaded test set, translating its sources first when it has no hypotheses: (report, rows, file)."""
    if not pairs_path:
        raise InvalidInputError("Upload a test set first (TSV or JSONL, or plain lines of sources).")
    data = read_test_set(pairs_path, references_path, engine.settings.max_upload_bytes)
    if data.hypotheses is None:
        hyps, result = mt.translate_lines(engine, data.sources, source_lang, target_lang, model or mt.AUTO,
                                          num_beams=int(num_beams or 0) or None, progress=progress)
        preamble = translation_markdown(result, f"Translated {len(hyps)} sources: ") + "\n"
    else:
        hyps = list(data.hypotheses)
        preamble = "Scored the hypotheses in the file; nothing was translated.\n"
    report = scoring.score(hyps, [list(r) for r in data.reference_sets], target_lang)
    return (report_markdown(report, preamble), score_rows(report),
            write_download("\n".join(hyps), Path(pairs_path).stem + ".hyp", target_lang))


# --- the tab ---------------------------------------------------------------------------------------------------


def build(engine: Engine) -> gr.Blocks:
    work = model_work(engine)
    with gr.Blocks() as tab:
        gr.Markdown(t("translation.intro"))
        with gr.Row():
            source = gr.Dropdown(language_choices(engine, auto=True), value=mt.AUTO, label="From", scale=2)
            swap = gr.Button("⇄", scale=0, min_width=50)
            target = gr.Dropdown(language_choices(engine), value="de", label="To", scale=2)
            model = gr.Dropdown(model_choices(engine), value=mt.AUTO, label="Model", scale=3)
        with gr.Row():
            compare = gr.Checkbox(False, label="Side by side: also translate with the instruct LLM (generative vs. "
                                               "encoder-decoder)")
            beams = gr.Slider(0, mt.MAX_BEAMS, value=0, step=1, label="Beams (0: the model's own default)")
        with gr.Row():
            text = gr.Textbox(lines=10, max_lines=30, label="Text", placeholder="Type, paste, or upload a .txt file.")
            output = gr.Textbox(lines=10, max_lines=30, label="Translation", interactive=False, buttons=["copy"])
            llm_output = gr.Textbox(lines=10, max_lines=30, label="The instruct LLM's translation", visible=False,
                                    interactive=False, buttons=["copy"])
        run = gr.Button(t("translation.translate"), variant="primary")
        gr.Examples([list(e) for e in EXAMPLES], [text, source, target], label=t("common.examples"))
        info = gr.Markdown()
        with gr.Row():
            upload = gr.File(label="Upload a .txt file (UTF-8)", file_types=[".txt"], type="filepath")
            download = gr.File(label="Download the translation", interactive=False)
        sentences = gr.Dataframe(headers=SENTENCE_HEADERS, label="Sentence by sentence", interactive=False, wrap=True)
        code_engine, code_plain = code_panel()
        stem = gr.State("")

        with gr.Accordion("Score translations with sacrebleu (BLEU, chrF++, TER)", open=False):
            gr.Markdown("Paste references, one per line. Leave the hypotheses empty to score the last translation "
                        "above. Or upload a test set: a TSV or JSONL file of sources and references (and optionally "
                        "hypotheses), or two plain-text files with one sentence per line. A test set without "
                        "hypotheses is translated here first, with the languages and model chosen above.")
            with gr.Row():
                hypotheses = gr.Textbox(lines=6, label="Hypotheses (one per line; empty: the last translation)")
                references = gr.Textbox(lines=6, label="References (one per line)")
            score_lang = gr.Dropdown(language_choices(engine), value="de",
                                     label="Target language (picks the BLEU tokenizer: zh, ja-mecab or 13a)")
            score_button = gr.Button("Score", variant="primary")
            with gr.Row():
                pairs_file = gr.File(label="Test set: TSV/JSONL, or plain lines of sources",
                                     file_types=[".tsv", ".tab", ".jsonl", ".json", ".txt"], type="filepath")
                refs_file = gr.File(label="References as plain lines (with a plain sources file)",
                                    file_types=[".txt"], type="filepath")
            file_button = gr.Button("Score the test set (translating its sources if it has no hypotheses)")
            report = gr.Markdown()
            per_sentence = gr.Dataframe(headers=SCORE_HEADERS, label="Per sentence, worst first", interactive=False,
                                        wrap=True)
            hyp_download = gr.File(label="The hypotheses that were scored", interactive=False)
            score_code_engine, score_code_plain = code_panel()

        @user_errors
        def do_translate(text: str, source_lang: str, target_lang: str, model: str, num_beams: float,
                         side_by_side: bool, name: str, progress=gr.Progress()):
            ensure_loaded(engine, "translation", model, progress)  # a named model: which, its size, progress
            r = run_translation(engine, text, source_lang, target_lang, model, num_beams, side_by_side, name,
                                _progress(progress))
            other = r["other"]
            beams = int(num_beams or 0) or None
            code = code_values(lambda: codegen.translation_code(engine, text, r["main"], model or mt.AUTO, beams))
            return (r["main"].text, gr.Textbox(value=other.text if other else "", visible=other is not None),
                    r["markdown"], gr.Dataframe(value=r["rows"], headers=r["headers"]), r["download"],
                    r["main"].text, r["main"].target_lang, *code)

        @user_errors
        def do_upload(path: str | None):
            if not path:
                return gr.Textbox(), ""
            content = mt.read_text_file(path, engine.settings.max_upload_bytes)
            return content, Path(path).stem

        @user_errors
        def do_score(hyps: str, refs: str, target_lang: str, last: str):
            hyps = hyps if hyps and hyps.strip() else last
            report = score_texts(hyps, refs, target_lang)
            code = code_values(lambda: codegen.scoring_code(scoring.parse_lines(hyps), scoring.parse_lines(refs),
                                                            target_lang, report))
            return report_markdown(report), score_rows(report), *code

        @user_errors
        def do_score_file(pairs_path: str | None, refs_path: str | None, source_lang: str, target_lang: str,
                          model: str, num_beams: float, progress=gr.Progress()):
            return run_test_set(engine, pairs_path, refs_path, source_lang, target_lang, model, num_beams,
                                _progress(progress))

        def do_swap(source_lang: str, target_lang: str, text: str, translated: str):
            if source_lang == mt.AUTO:
                gr.Warning("Pick the source language to swap the direction.")
                return source_lang, target_lang, text
            return target_lang, source_lang, translated or text

        last = gr.State("")
        translated = [output, llm_output, info, sentences, download, last, score_lang, code_engine, code_plain]
        run.click(do_translate, [text, source, target, model, beams, compare, stem], translated,
                  api_visibility="private", **work)
        text.submit(do_translate, [text, source, target, model, beams, compare, stem], translated,
                    api_visibility="private", **work)
        upload.upload(do_upload, upload, [text, stem], api_visibility="private")
        swap.click(do_swap, [source, target, text, output], [source, target, text], api_visibility="private",
                   queue=False)
        score_button.click(do_score, [hypotheses, references, score_lang, last],
                           [report, per_sentence, score_code_engine, score_code_plain], api_visibility="private")
        file_button.click(do_score_file, [pairs_file, refs_file, source, target, model, beams],
                          [report, per_sentence, hyp_download], api_visibility="private", **work)

        # The public endpoints: plain values in, plain JSON out.
        @user_errors
        def translate(text: str, source_lang: str = mt.AUTO, target_lang: str = "de", model: str = mt.AUTO) -> dict:
            """Translate text. source_lang: a language code or "auto"; model: "auto" (the best model available,
            falling back to the instruct LLM), "llm", or a model name. Returns the translation, the route and notes."""
            return translation_dict(engine.translate(text, source_lang, target_lang, model or mt.AUTO))

        @user_errors
        def score_translation(hypotheses: str, references: str, target_lang: str = "en") -> dict:
            """Score hypotheses against references (one sentence per line) with sacrebleu: corpus BLEU, chrF++ and
            TER with their signatures, the tokenizer, warnings and per-sentence chrF++ (worst first)."""
            return report_dict(score_texts(hypotheses, references, target_lang))

        gr.api(translate, api_name="translate", **work)
        gr.api(score_translation, api_name="score_translation")
    tab.example_inputs = [text, source, target]  # what Start here's guided path fills (apps/shell.py)
    return tab
