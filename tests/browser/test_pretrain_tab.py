"""The Pretrain tab as a visitor uses it, in headless Chromium: the bundled Shakespeare tokenized character by
character, a tiny GPT trained from the page (loss curve, learning-rate schedule, a sample at each evaluation), then
the new model picked in the Text generation tab's list and asked to continue a line. Screenshots go to
``artifacts/screenshots/``."""
from __future__ import annotations

import shutil

import pytest

from ui import field, markdown_text, open_tab, pick_model, press, screenshot, wait_for_text

pytestmark = pytest.mark.browser

NAME = "browser-gpt"
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "max_iters": 60, "eval_interval": 20}


@pytest.fixture
def cleanup():
    """The model trained here lives in the machine's model cache, like a visitor's: remove it afterwards."""
    from engine.config import default_cache_dir

    yield
    shutil.rmtree(default_cache_dir() / "trained" / NAME, ignore_errors=True)


def _number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True).locator("visible=true")
    box.fill(str(value))
    box.press("Enter")


def test_pretrain_a_tiny_gpt_from_the_page_then_generate_with_it(page, cleanup):
    open_tab(page, "Pretrain")
    press(page, "Show how the text is tokenized")
    preview = markdown_text(page, r"characters → \d+ tokens")
    assert "300 characters → 300 tokens" in preview and "vocabulary of this text: **76**" not in preview, preview

    page.get_by_text("More of the recipe").click()
    for label, value in {**TINY, "eval_iters": 2}.items():
        _number(page, label, value)
    field(page, "Model name (letters, digits, . _ -)").fill(NAME)
    press(page, "Train")

    status = markdown_text(page, rf"Done: 60 steps; saved as '{NAME}'", timeout=600_000)
    assert "validation" in status, status
    sample = wait_for_text(page, field(page, "Latest sample (generated at the last evaluation)"))
    assert len(sample) > 50, sample
    page.get_by_text("Loss (cross-entropy, nats per token)").first.wait_for()
    page.locator(".vega-embed").first.wait_for()  # the curves are drawn
    page.get_by_role("checkbox", name=NAME).first.wait_for()  # the run is listed for comparison
    page.get_by_text("Validation loss of each run").first.wait_for()  # and its curve drawn

    _number(page, "max_iters", 80)  # continue the run
    press(page, "Continue this run (to max_iters)")
    markdown_text(page, rf"Done: 80 steps; saved as '{NAME}'", timeout=600_000)
    screenshot(page, "pretrain")

    open_tab(page, "Text generation")
    pick_model(page, NAME)  # the model just trained is in the list
    field(page, "Prompt").first.fill("ROMEO:")
    press(page, "Generate")
    output = wait_for_text(page, field(page, "Output").first)
    assert output.strip(), output
    screenshot(page, "pretrain-generate")
    assert not page.errors
