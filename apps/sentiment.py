"""The Sentiment tab: the label distribution of one text as a chart, which words pushed the prediction
(occlusion), and batch mode (many lines or a CSV column -> a table, a chart of label counts and a CSV file).

Public endpoint: ``/classify`` (``text``) -> the label distribution.
"""
from __future__ import annotations

import contextvars

import gradio as gr
import pandas as pd

from engine import Engine, InvalidInputError, codegen
from engine.tasks.common import check_text
from engine.tasks.sentiment import (LLM, Batch, Classification, Explanation, classify_batch, csv_columns,
                                    texts_from_csv, texts_from_lines)
from engine.tasks.common import read_text_file

from .code_panel import code_panel, code_values
from .common import DOWNLOADS, model_work, user_errors
from .i18n import t
from .loading import with_load_notice

LLM_CHOICE = ("Instruct LLM (zero-shot)", LLM)
BATCH_HEADERS = ["row", "text", "label", "score"]
EXAMPLE = "I loved this film, the acting was wonderful."
EXAMPLES = [EXAMPLE, "What a waste of time, the plot made no sense at all.", "这部电影太好看了,演员的表演非常精彩。",
            "我吃了一个饼干,味道很一般。"]  # Chinese: for a multilingual model or the instruct LLM
# the intro is in apps/i18n.py ("sentiment.intro"), in English and Chinese


def model_choices(engine: Engine) -> tuple[list[tuple[str, str]], str]:
    specs = engine.registry.for_task("sentiment")
    return [(s.name, s.name) for s in specs] + [LLM_CHOICE], engine.registry.default("sentiment").name


def summary_markdown(result: Classification | Explanation | Batch, notes: tuple[str, ...]) -> str:
    lines = [f"**Model:** {result.model}"] + [f"- {note}" for note in dict.fromkeys(notes)]
    return "\n".join(lines)


def counts_frame(batch: Batch) -> pd.DataFrame:
    counts = batch.counts()
    return pd.DataFrame({"label": list(counts), "count": list(counts.values())})


def write_csv(batch: Batch) -> str:
    return DOWNLOADS.write_text("sentiment.csv", batch.to_csv())


def read_upload(path: str | None, max_bytes: int) -> str:
    """The text of an uploaded CSV file (UTF-8), or a clear refusal."""
    if not path:
        raise InvalidInputError("Upload a CSV file first.")
    return read_text_file(path, max_bytes)


def build(engine: Engine) -> gr.Blocks:
    choices, default = model_choices(engine)

    @user_errors
    def classify_ui(text: str, model: str | None, with_words: bool):
        model = model or None
        if with_words:
            result = engine.explain(text, model)
            code = code_values(lambda: codegen.classification_code(engine, result))
            return result.distribution, result.highlights(), summary_markdown(result, result.notes), *code
        result = engine.classify(text, model)
        code = code_values(lambda: codegen.classification_code(engine, result))
        return result.distribution, None, summary_markdown(result, result.notes), *code

    @user_errors
    def classify(text: str) -> dict:
        """The label distribution of ``text`` by the default model (the instruct LLM when it is not on this
        machine): ``label``, ``score``, ``distribution`` (label -> probability), ``model`` and ``notes``."""
        result = engine.classify(check_text(text, "text", engine.settings.max_chars))  # one text, never a list
        return {"label": result.label, "score": result.score, "distribution": result.distribution,
                "model": result.model, "generative": result.generative, "notes": list(result.notes)}

    @user_errors
    def columns_of(path: str | None):
        if not path:
            return gr.Dropdown(choices=[], value=None)
        columns = csv_columns(read_upload(path, engine.settings.max_upload_bytes))
        preferred = next((n for n in columns if n.strip().lower() in ("text", "sentence", "review", "content")),
                         columns[0] if columns else None)
        return gr.Dropdown(choices=columns, value=preferred)

    @user_errors
    def batch_ui(lines: str, path: str | None, column: str | None, model: str | None,
                 progress: gr.Progress = gr.Progress()):
        if path:
            texts = texts_from_csv(read_upload(path, engine.settings.max_upload_bytes), column or "")
        else:
            texts = texts_from_lines(lines or "")
        context = contextvars.copy_context()  # gradio finds the event's progress bar through context variables,
        # and the engine reports progress from its worker thread
        batch = classify_batch(engine, texts, model or None,
                               progress=lambda fraction, message: context.run(progress, fraction, desc=message))
        return batch.rows(), counts_frame(batch), write_csv(batch), summary_markdown(batch, batch.notes)

    with gr.Blocks() as tab:
        gr.Markdown(t("sentiment.intro"))
        model = gr.Dropdown(choices, value=default, label="Model")
        with gr.Tab("One text"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Text", value=EXAMPLE, lines=4, max_length=engine.settings.max_chars)
                    with_words = gr.Checkbox(value=True, label="Show which words pushed the prediction")
                    button = gr.Button(t("sentiment.classify"), variant="primary")
                    gr.Examples([[e] for e in EXAMPLES], [text], label=t("common.examples"))
                with gr.Column():
                    distribution = gr.Label(label="Label distribution")
                    words = gr.HighlightedText(label="Word importance (occlusion)", show_legend=False,
                                               combine_adjacent=False)
                    notes = gr.Markdown()
            code_engine, code_plain = code_panel()
        with gr.Tab("Batch"):
            with gr.Row():
                with gr.Column():
                    lines = gr.Textbox(label="Texts, one per line", lines=8)
                    upload = gr.File(label="…or a CSV file", file_types=[".csv", ".tsv", ".txt"], type="filepath",
                                     height=90)
                    column = gr.Dropdown([], label="Text column of the CSV", allow_custom_value=False)
                    batch_button = gr.Button("Classify all", variant="primary")
                with gr.Column():
                    counts = gr.BarPlot(x="label", y="count", title="Label counts", label="Label counts")
                    download = gr.File(label="Results (CSV)")
                    batch_notes = gr.Markdown()
            table = gr.Dataframe(headers=BATCH_HEADERS, label="Results, in input order", interactive=False,
                                 wrap=True)

        single = [text, model, with_words]
        single_outputs = [distribution, words, notes, code_engine, code_plain]
        classify_with_notice = with_load_notice(engine, "sentiment")(classify_ui)
        button.click(classify_with_notice, single, single_outputs, api_visibility="private", **model_work(engine))
        text.submit(classify_with_notice, single, single_outputs, api_visibility="private", **model_work(engine))
        upload.change(columns_of, upload, column, api_visibility="private", queue=False)
        batch_button.click(batch_ui, [lines, upload, column, model], [table, counts, download, batch_notes],
                           api_visibility="private", **model_work(engine))
        # Classifiers made in the Fine-tune tab appear without a reload: the list is read again each time it opens.
        model.focus(lambda: gr.Dropdown(choices=model_choices(engine)[0]), None, model, api_visibility="private",
                    queue=False)
        gr.api(classify, api_name="classify", **model_work(engine))
    tab.example_inputs = [text]  # what Start here's guided path fills (apps/shell.py)
    return tab
