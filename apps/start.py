"""The Start here tab (the first tab): the article's map of how language models are made and used, drawn with Mermaid,
each box a link to the tab that shows it; and a guided path of five steps, each button opening its tab filled with
an example (wired by :func:`apps.shell.connect` once every tab is built)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import gradio as gr

from engine import Engine

from .i18n import t

ATTENTION_EXAMPLE = "The cat sat on the mat because it was tired."
LENS_EXAMPLE = "我 吃了一个 饼干"
QA_QUESTION = "When was the Eiffel Tower completed?"
QA_CONTEXT = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889 as the entrance "
              "arch to the World's Fair.")


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the guided path: its text, its button, the tab it opens (and inner view), and the example values
    for that tab's ``example_inputs`` (or its ``view_inputs[view]``), given the assets folder."""

    text_key: str
    button_key: str
    tab: str
    values: Callable[[Path], tuple]
    view: str | None = None


STEPS = (
    Step("start.step1", "start.step1.button", "text-generation", lambda _: ("Write one sentence about the sea.", True)),
    Step("start.step2", "start.step2.button", "text-generation", lambda _: (LENS_EXAMPLE,), view="lens"),
    Step("start.step3", "start.step3.button", "attention", lambda _: (ATTENTION_EXAMPLE,)),
    Step("start.step4", "start.step4.button", "question-answering", lambda _: (QA_QUESTION, QA_CONTEXT)),
    Step("start.step5", "start.step5.button", "speech-to-text",
         lambda assets: (str(assets / "audio" / "tokens-en.wav"),)),
)


def build(engine: Engine) -> gr.Blocks:
    with gr.Blocks() as tab:
        gr.Markdown(t("start.intro"))
        gr.Markdown(t("start.map"), elem_id="start-map")
        gr.Markdown(t("start.path_title"))
        buttons = []
        for step in STEPS:
            with gr.Row(equal_height=True):
                gr.Markdown(t(step.text_key), scale=3)
                buttons.append((gr.Button(t(step.button_key), scale=1, size="sm"), step))
        gr.Markdown(t("start.more"))
    tab.guide_buttons = buttons  # wired to their tabs by apps.shell.connect, once those exist
    return tab
