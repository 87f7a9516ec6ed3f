"""A first visit, in a real browser: Start here in English and in Chinese (the browser's language picks it), a box of
the map followed to its tab, an attention map, and the Code panel under a result. Screenshots of each go to
``artifacts/screenshots/``."""
from __future__ import annotations

import re

import pytest

from ui import MODEL_TIMEOUT_MS, field, markdown_text, press, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def visit(browser, app):
    """Open the app in a fresh browser context with the given locale; yields a function(locale, query) -> page."""
    contexts = []

    def open_page(locale: str = "en-US", query: str = ""):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(app.url + query, wait_until="domcontentloaded")
        page.get_by_role("tab").first.wait_for(timeout=60_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def selected_tab(page) -> str:
    return page.locator("[role=tab][aria-selected=true]").first.inner_text().strip()


def map_svg(page, box: str):
    """The map as Mermaid drew it (not left as a code block), once it shows ``box``."""
    svg = page.locator("#start-map svg").filter(has_text=box).first
    svg.wait_for(timeout=30_000)
    return svg


def test_start_here_in_english(visit):
    page = visit("en-US")
    assert selected_tab(page) == "Start here"
    svg = map_svg(page, "Word embeddings")
    for box in ("Word embeddings", "Next-word prediction", "Fine-tune", "Question answering", "Speech to text"):
        assert svg.get_by_text(box).count() >= 1, box
    assert page.get_by_role("button", name="Open Attention with an example").is_visible()
    screenshot(page, "start-here-en")
    assert not page.errors


def test_start_here_in_chinese(visit):
    page = visit("zh-CN")
    assert selected_tab(page) == "从这里开始"
    tabs = [t.inner_text().strip() for t in page.get_by_role("tab").all()]
    assert {"文本生成", "注意力", "问答", "情感分析", "语音转文字", "引擎"} <= set(tabs), tabs
    svg = map_svg(page, "词向量")
    assert svg.get_by_text("词向量").count() >= 1 and svg.get_by_text("微调").count() >= 1
    assert page.get_by_text(re.compile("十分钟入门路线")).first.is_visible()
    screenshot(page, "start-here-zh")
    assert not page.errors


def test_a_box_of_the_map_opens_its_tab(visit):
    page = visit("en-US")
    link = map_svg(page, "Sentiment").locator("a", has_text="Sentiment").first
    link.click()
    page.wait_for_url(re.compile(r"\?tab=sentiment"))
    page.get_by_role("tab").first.wait_for()
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === "
                           "'Sentiment'", timeout=30_000)
    screenshot(page, "start-here-map-link-sentiment")
    assert not page.errors


def test_an_attention_map(visit):
    page = visit("en-US")
    press(page, "Open Attention with an example")  # the guided path's step 3: the tab, its example filled in
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === "
                           "'Attention'")
    assert "The cat sat on the mat" in field(page, "Text (a prompt or a sentence)").input_value()
    press(page, "Show the attention")
    # its eager-attention copy loads now: the page names it, with its size, instead of a bare spinner
    page.get_by_text(re.compile(r"SmolLM2-135M-Instruct · attention.*540 MB")).first.wait_for()
    summary = markdown_text(page, r"Previous-token head:", timeout=MODEL_TIMEOUT_MS)
    assert re.search(r"layer \d+, head \d+", summary)
    heatmap = page.locator("table").filter(has=page.locator("caption", has_text="row = the token reading"))
    heatmap.first.wait_for()
    assert heatmap.first.locator("td").count() >= 11 * 11  # one cell per pair of tokens
    screenshot(page, "attention-map")
    assert not page.errors


def test_the_code_behind_a_result(visit):
    page = visit("en-US")
    press(page, "Open Text generation with an example")
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === "
                           "'Text generation'")
    assert field(page, "Prompt").input_value() == "Write one sentence about the sea."
    page.get_by_label("number input for Max new tokens").locator("visible=true").fill("8")
    page.keyboard.press("Tab")
    page.get_by_label("number input for Temperature (0 = greedy: always the most likely token)").locator(
        "visible=true").fill("0")
    page.keyboard.press("Tab")
    press(page, "Generate")
    markdown_text(page, r"\d+ tokens in .* s")
    page.get_by_text("Code: reproduce this result in Python").locator("visible=true").first.click()
    code = page.locator(".code-panel .cm-content").locator("visible=true")
    code.first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('.code-panel .cm-content')]"
                           ".some(e => e.innerText.includes('engine.generate('))", timeout=30_000)
    texts = [c.inner_text() for c in code.all()]
    assert any("engine.generate(" in t and "temperature=0" in t for t in texts), texts
    assert any("AutoModelForCausalLM" in t and "do_sample=False" in t for t in texts), texts
    page.locator(".code-panel").first.scroll_into_view_if_needed()
    screenshot(page, "code-panel")
    assert not page.errors
