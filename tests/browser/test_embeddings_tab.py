"""The Embeddings tab as a visitor uses it, in headless Chromium: the neighbours of a common word in SmolLM2's
token-embedding table, a 2-D map of a bundled example list, and a sentence-similarity heatmap. The app runs as
shipped (offline; the packaged SmolLM2 and MiniLM answer). Screenshots go to ``artifacts/screenshots/``."""
from __future__ import annotations

import re

import pytest

from ui import field, markdown_text, open_tab, press, screenshot

pytestmark = pytest.mark.browser


def _subtab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).first.click()


def _block(page, label: str):
    """The innermost block (a table, a plot) whose label is ``label``."""
    return page.locator("div.block").filter(has=page.get_by_text(label, exact=True)).locator("visible=true").last


def test_neighbours_of_a_common_word(page):
    open_tab(page, "Embeddings")
    field(page, "Word").fill("king")
    press(page, "Find neighbours")
    pieces = markdown_text(page, r"token-embedding table")
    assert "SmolLM2-135M-Instruct" in pieces and "1 token" in pieces, pieces
    table = _block(page, "Nearest tokens")
    table.get_by_text("␣queen", exact=True).first.wait_for()
    assert re.search(r"␣kings.*␣emperor", table.inner_text(), re.S), table.inner_text()
    screenshot(page, "embeddings-neighbours")

    press(page, "Solve the analogy")
    analogy = markdown_text(page, r"king - man \+ woman")
    assert "woman" in analogy
    answers = _block(page, "a − b + c ≈")
    answers.get_by_text("␣queen", exact=True).first.wait_for()
    assert answers.locator("[data-testid=cell-0-1]").inner_text().strip() == "␣queen"
    screenshot(page, "embeddings-analogy")

    _subtab(page, "Next word as an inner product")  # the prompt is filled in: "The capital of France is"
    press(page, "Show inner products")
    check = markdown_text(page, r"Largest difference over the vocabulary")
    assert "equal within rounding" in check, check
    candidates = _block(page, "Next-token candidates")
    assert candidates.locator("[data-testid=cell-0-0]").inner_text().strip() == "␣Paris"
    screenshot(page, "embeddings-inner-products")
    assert not page.errors


def test_map_of_a_bundled_list(page):
    open_tab(page, "Embeddings")
    _subtab(page, "Map")
    page.get_by_label("Example list").locator("visible=true").click()
    page.get_by_role("option", name="animals", exact=True).click()
    items = field(page, "Items, one per line (a group after | colours the points)")
    page.wait_for_function("el => el.value.includes('elephant | mammal')", arg=items.element_handle())
    press(page, "Draw the map")
    notes = markdown_text(page, r"\d+ points")
    assert "32 points" in notes and "PCA" in notes, notes
    plot = page.locator(".vega-embed").locator("visible=true").first
    plot.wait_for()
    page.wait_for_timeout(1000)  # the chart draws after its data arrives
    for group in ("mammal", "bird", "fish", "insect", "reptile"):  # the legend names each group
        assert plot.get_by_text(group, exact=True).count() >= 1 or group in plot.inner_text(), group
    screenshot(page, "embeddings-map")
    assert not page.errors


def test_sentence_similarity_heatmap(page):
    open_tab(page, "Embeddings")
    _subtab(page, "Sentence vectors")
    press(page, "Show similarity")
    heatmap = page.locator(".similarity-heatmap").locator("visible=true").first
    heatmap.wait_for(timeout=180_000)
    rows = heatmap.locator("tr")
    assert rows.count() == 7  # a header and the six example sentences
    cells = [float(c) for c in heatmap.locator("td").all_inner_texts()]
    assert len(cells) == 36 and all(c == pytest.approx(1.0, abs=0.01) for c in cells[::7])  # the diagonal
    guitar_instrument, guitar_onion = cells[1], cells[2]
    assert guitar_instrument > 0.5 > guitar_onion
    screenshot(page, "embeddings-heatmap")

    press(page, "Search")
    summary = markdown_text(page, r"answered in \d+ ms")
    assert "15 sentences (encoded now" in summary, summary
    first_hit = _block(page, "Closest sentences").locator("[data-testid=cell-0-3]").inner_text()
    assert re.search(r"guitar|orchestra|choir|sings", first_hit), first_hit
    screenshot(page, "embeddings-search")
    assert not page.errors
