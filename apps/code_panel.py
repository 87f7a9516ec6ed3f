"""The "Code" panel under a result: the Python that reproduces it, with this app's engine and with the plain libraries
(written by :mod:`engine.codegen`)."""
from __future__ import annotations

import logging
from typing import Callable

import gradio as gr

from engine.codegen import Snippets

from .i18n import t

log = logging.getLogger(__name__)


def code_panel() -> tuple[gr.Code, gr.Code]:
    """A closed accordion holding two code boxes (engine, plain libraries); returns the two boxes."""
    with gr.Accordion(t("common.code"), open=False, elem_classes=["code-panel"]):
        engine_code = gr.Code(language="python", label=t("common.code_engine"), interactive=False)
        plain_code = gr.Code(language="python", label=t("common.code_plain"), interactive=False)
    return engine_code, plain_code


def code_values(make: Callable[[], Snippets]) -> tuple[str, str]:
    """The two scripts, or a comment saying why there are none: writing code never costs the user their result."""
    try:
        snippets = make()
    except Exception:  # any failure here must leave the result on the page
        log.exception("writing the code behind a result failed")
        why = "# The code for this result could not be written (the error is in the app's log).\n"
        return why, why
    return snippets.engine, snippets.plain
