"""The Question answering tab: an extractive model points at the answer in the context (highlighted, with the
top-k spans and their scores); the instruct LLM answers generatively, and the tab says whether its answer occurs
in the context.

Public endpoint: ``/answer`` (``question``, ``context``) -> the answer, its score and its character span.
"""
from __future__ import annotations

import math
from pathlib import Path

import gradio as gr

from engine import Engine, InvalidInputError, codegen
from engine.tasks.qa import LLM, Answer, can_say_no_answer
from engine.tasks.common import read_text_file

from .code_panel import code_panel, code_values
from .common import model_work, user_errors
from .i18n import t
from .loading import with_load_notice

LLM_CHOICE = ("Instruct LLM (generative)", LLM)
CANDIDATE_HEADERS = ["rank", "answer", "score", "start", "end", "window"]
EXAMPLE_QUESTION = "When was the Eiffel Tower completed?"
EXAMPLE_CONTEXT = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889 as the "
                   "entrance arch to the World's Fair.")
EXAMPLES = [  # (question, context): English for the SQuAD models, Chinese for the instruct LLM
    (EXAMPLE_QUESTION, EXAMPLE_CONTEXT),
    ("Where was Alan Turing born?", "Alan Turing was born in London in 1912. He studied mathematics at Cambridge."),
    ("谁吃了饼干?", "我吃了一个饼干,然后喝了一杯茶。我的朋友只喝了水。"),
]
# the intro is in apps/i18n.py ("qa.intro"), in English and Chinese


def model_choices(engine: Engine) -> tuple[list[tuple[str, str]], str]:
    specs = engine.registry.for_task("question-answering")
    return [(s.name, s.name) for s in specs] + [LLM_CHOICE], engine.registry.default("question-answering").name


def read_context_file(path: str | None, max_bytes: int) -> str:
    """The text of an uploaded .txt or .md file."""
    if not path:
        return ""
    file = Path(path)
    if file.suffix.lower() not in (".txt", ".md", ".markdown"):
        raise InvalidInputError(f"{file.name} is not a .txt or .md file; upload plain text.")
    return read_text_file(file, max_bytes)


def summary_markdown(result: Answer) -> str:
    if result.has_answer:
        head = f"### {result.text}\n**Score:** {result.score:.3f}"
        if result.start is not None:
            head += f" · **Characters** {result.start}–{result.end}"
    else:
        best = result.candidates[0] if result.candidates else None
        head = "### No answer\n" + (f"Best span was “{best.text}” ({best.score:.3f})." if best else "")
    if result.generative:
        head += " · **In the context:** " + ("yes" if result.in_context else "no")
    model = f"**Model:** {result.model}" + (" (generative)" if result.generative else " (extractive)")
    if result.null_score is not None:
        model += f" · **No-answer score:** {result.null_score:.3f}"
    return "\n\n".join([head, model, "\n".join(f"- {note}" for note in result.notes)])


def highlighted(context: str, result: Answer) -> list[tuple[str, str | None]]:
    """The context in pieces, the answer span marked "answer" (and the other candidates "candidate")."""
    marks: list[tuple[int, int, str]] = []
    if result.start is not None:
        marks.append((result.start, result.end, "answer"))
    for span in result.candidates:
        if all(span.end <= a or span.start >= b for a, b, _ in marks):
            marks.append((span.start, span.end, "candidate"))
    pieces, at = [], 0
    for a, b, label in sorted(marks):
        if a > at:
            pieces.append((context[at:a], None))
        pieces.append((context[a:b], label))
        at = b
    if at < len(context):
        pieces.append((context[at:], None))
    return pieces


def candidate_rows(result: Answer) -> list[list]:
    return [[i, c.text, round(c.score, 4), c.start, c.end, c.window + 1]
            for i, c in enumerate(result.candidates, start=1)]


def api_dict(result: Answer) -> dict:
    """What ``/answer`` returns: the answer, its score, its character span, and how it was found."""
    return {"answer": result.text, "score": result.score, "start": result.start, "end": result.end,
            "has_answer": result.has_answer, "model": result.model, "generative": result.generative,
            "in_context": result.in_context, "notes": list(result.notes),
            "candidates": [{"answer": c.text, "score": c.score, "start": c.start, "end": c.end}
                           for c in result.candidates]}


def build(engine: Engine) -> gr.Blocks:
    choices, default = model_choices(engine)

    @user_errors
    def answer_ui(question: str, context: str, model: str | None, top_k: float, allow_no_answer: bool,
                  threshold: float):
        result = engine.answer(question, context, model or None, top_k=int(top_k),
                               no_answer_threshold=float(threshold) if allow_no_answer else math.inf)
        code = code_values(lambda: codegen.answer_code(engine, question, context, result, int(top_k)))
        return summary_markdown(result), highlighted(context, result), candidate_rows(result), *code

    @user_errors
    def answer(question: str, context: str) -> dict:
        """Answer ``question`` from ``context`` with the default model (the instruct LLM when it is not on this
        machine): the answer, its score, its character span (``start``, ``end``) and notes."""
        return api_dict(engine.answer(question, context))

    @user_errors
    def load_file(path):
        return read_context_file(path, engine.settings.max_upload_bytes)

    def model_changed(model: str | None):
        abstains = bool(model) and model != LLM and can_say_no_answer(engine.spec("question-answering", model))
        return gr.Checkbox(value=abstains, interactive=model != LLM), gr.Slider(interactive=model != LLM)

    with gr.Blocks() as tab:
        gr.Markdown(t("qa.intro"))
        with gr.Row():
            with gr.Column(scale=3):
                question = gr.Textbox(label="Question", value=EXAMPLE_QUESTION, max_lines=3)
                context = gr.Textbox(label="Context", value=EXAMPLE_CONTEXT, lines=8, max_lines=20,
                                     max_length=engine.settings.max_chars)
                upload = gr.File(label="…or upload the context (.txt or .md)", file_types=[".txt", ".md"],
                                 type="filepath", height=90)
            with gr.Column(scale=2):
                model = gr.Dropdown(choices, value=default, label="Model")
                top_k = gr.Slider(1, 10, value=3, step=1, label="Top-k answers")
                allow_no_answer = gr.Checkbox(value=can_say_no_answer(engine.spec("question-answering", default)),
                                              label="Allow “no answer”",
                                              info="On by default for SQuAD 2.0 models, which were trained for it.")
                threshold = gr.Slider(-10, 10, value=0, step=0.5, label="No-answer threshold (logits)",
                                      info="“No answer” when the model's no-answer score beats its best span by more "
                                           "than this. Higher: answers more often.")
                button = gr.Button(t("qa.answer"), variant="primary")
        gr.Examples([list(e) for e in EXAMPLES], [question, context], label=t("common.examples"))
        summary = gr.Markdown()
        spans = gr.HighlightedText(label="The answer in the context", show_legend=True, combine_adjacent=False,
                                   color_map={"answer": "green", "candidate": "yellow"})
        table = gr.Dataframe(headers=CANDIDATE_HEADERS, label="Top answers", interactive=False, wrap=True)
        code_engine, code_plain = code_panel()

        inputs = [question, context, model, top_k, allow_no_answer, threshold]
        outputs = [summary, spans, table, code_engine, code_plain]
        answer_with_notice = with_load_notice(engine, "question-answering")(answer_ui)
        button.click(answer_with_notice, inputs, outputs, api_visibility="private", **model_work(engine))
        question.submit(answer_with_notice, inputs, outputs, api_visibility="private", **model_work(engine))
        upload.upload(load_file, upload, context, api_visibility="private")
        model.change(model_changed, model, [allow_no_answer, threshold], api_visibility="private", queue=False)
        # Readers made in the Fine-tune tab appear without a reload: the list is read again each time it opens.
        model.focus(lambda: gr.Dropdown(choices=model_choices(engine)[0]), None, model, api_visibility="private",
                    queue=False)
        gr.api(answer, api_name="answer", **model_work(engine))
    tab.example_inputs = [question, context]  # what Start here's guided path fills (apps/shell.py)
    return tab
