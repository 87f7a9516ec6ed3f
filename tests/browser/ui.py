"""What the browser tests do on a page, as a person would: open a tab, find a box by its visible label, type, press a
button, wait for the answer to appear; and the screenshots they leave in ``artifacts/screenshots/`` (gitignored)."""
from __future__ import annotations

import re
from pathlib import Path

from app_process import ROOT

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MODEL_TIMEOUT_MS = 180_000  # a model's first load plus its answer, on a busy 2-core machine


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).first.click()


def field(page, label: str):
    """The visible text box or input whose label is exactly ``label`` (in the open tab)."""
    info = page.locator("[data-testid=block-info]", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return page.locator("label").filter(has=info).locator("textarea, input").locator("visible=true")


def pick_model(page, name: str) -> None:
    """Choose ``name`` in the open tab's "Model" dropdown. Opening the list reads the registry again, so a model
    trained a moment ago is in it."""
    page.get_by_label("Model", exact=True).locator("visible=true").first.click()
    page.get_by_role("option", name=name, exact=True).click()


def press(page, button: str) -> None:
    page.get_by_role("button", name=button, exact=True).locator("visible=true").click()


def wait_for_text(page, box, timeout: float = MODEL_TIMEOUT_MS) -> str:
    """Wait until ``box`` shows some text, and return it."""
    page.wait_for_function("el => el.value.trim().length > 0", arg=box.element_handle(), timeout=timeout)
    return box.input_value()


def visible_text(page, pattern: str, timeout: float = MODEL_TIMEOUT_MS):
    """Wait until text matching ``pattern`` (a regular expression) is shown, and return its element."""
    element = page.get_by_text(re.compile(pattern)).locator("visible=true").first
    element.wait_for(timeout=timeout)
    return element


def markdown_text(page, pattern: str, timeout: float = MODEL_TIMEOUT_MS) -> str:
    """Wait until a Markdown block matching ``pattern`` is shown, and return all of its text."""
    block = page.get_by_test_id("markdown").filter(has_text=re.compile(pattern)).locator("visible=true").first
    block.wait_for(timeout=timeout)
    return block.inner_text()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
