"""The app shell around the tabs: each tab's id and translated title, links that open a tab (``?tab=ID``, what the
Start here map's boxes point at), the guided path's buttons wired to the tabs they fill, and the translations and
asset folder the app launches with.

A tab module may mark, on the Blocks its ``build`` returns, what a guided step fills: ``example_inputs`` (the
components, in order) and ``views`` (``{name: gr.Tab}`` of its inner tabs, for ``?tab=ID&view=NAME``).
"""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr

from .i18n import I18N, has, t

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def tab_id(title: str) -> str:
    """The id of the tab called ``title`` (in English): ``"Speech to text"`` -> ``"speech-to-text"``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def tab_label(title: str) -> Any:
    """The tab's title in the visitor's language when it has translations, else as written."""
    key = f"tab.{tab_id(title)}"
    return t(key) if has(key) else title


def connect(demo: gr.Blocks, tabs: gr.Tabs, built: dict[str, gr.Blocks]) -> None:
    """Wire what crosses tabs, once every tab is built: ``?tab=ID`` (and ``&view=NAME``) in the address opens that tab
    when the page loads, and each guided step's button opens its tab filled with its example."""
    views = [(name, tab) for tab_key, blocks in built.items()
             for name, tab in (getattr(blocks, "views", None) or {}).items()]
    inner = list({id(v.parent): v.parent for _, v in views if isinstance(v.parent, gr.Tabs)}.values())

    def open_from_url(request: gr.Request):
        params = request.query_params if request is not None else {}
        wanted, view = params.get("tab"), params.get("view")
        outer = gr.Tabs(selected=wanted) if wanted in built else gr.skip()
        updates = []
        for parent in inner:
            match = next((tab for name, tab in views if name == view and tab.parent is parent), None)
            updates.append(gr.Tabs(selected=match.id or match._id) if match is not None else gr.skip())
        return outer, *updates

    demo.load(open_from_url, None, [tabs, *inner], api_visibility="private", queue=False)

    for blocks in built.values():
        for button, step in getattr(blocks, "guide_buttons", ()):
            target = built.get(step.tab)
            if target is None:
                log.warning("guided step %s: no tab %r in this app", step.button_key, step.tab)
                continue
            inputs = list(getattr(target, "example_inputs", ()) if step.view is None
                          else getattr(target, "view_inputs", {}).get(step.view, ()))
            view_tab = (getattr(target, "views", None) or {}).get(step.view) if step.view else None
            outputs = [tabs, *([view_tab.parent] if view_tab is not None else []), *inputs]
            values = list(step.values(ASSETS))[:len(inputs)]

            def go(values=values, view_tab=view_tab, tab=step.tab):
                selected = [gr.Tabs(selected=tab)]
                if view_tab is not None:
                    selected.append(gr.Tabs(selected=view_tab.id or view_tab._id))
                return (*selected, *values) if len(selected) + len(values) > 1 else selected[0]

            button.click(go, None, outputs, api_visibility="private", queue=False)


def launch_with_translations(demo: gr.Blocks) -> gr.Blocks:
    """Make ``demo.launch`` (whoever calls it: app.py, or a test) serve the translations and the assets folder."""
    launch = demo.launch

    @functools.wraps(launch)
    def translated_launch(*args: Any, **kwargs: Any):
        kwargs.setdefault("i18n", I18N)
        kwargs["allowed_paths"] = [*(kwargs.get("allowed_paths") or []), str(ASSETS)]
        return launch(*args, **kwargs)

    demo.launch = translated_launch
    return demo
