"""Every tab as a person uses it, in headless Chromium: type or upload, press the button, read the answer on the page.

The app runs as shipped (``python app.py``, offline, the machine's model cache): the packaged SmolLM2 and Whisper
answer; the question-answering, sentiment and translation specialists are not on this machine, so the instruct LLM
stands in for them and the page says so. One screenshot per tab goes to ``artifacts/screenshots/``.
"""
from __future__ import annotations

import re

import pytest

from app_process import speech_wav
from ui import field, markdown_text, open_tab, press, screenshot, visible_text, wait_for_text

pytestmark = pytest.mark.browser

TABS = {  # tab title -> its main button, which each tab has exactly once
    "Text generation": "Generate", "Translation": "Translate", "Question answering": "Answer",
    "Sentiment": "Classify", "Speech to text": "Transcribe", "Engine": "Refresh",
    "Embeddings": "Find neighbours", "Pretrain": "Train", "Fine-tune": "Fine-tune", "Attention": "Show the attention",
    "Start here": "Open Text generation with an example",
}


def test_every_tab_is_shown_once(page):
    for title, button in TABS.items():
        open_tab(page, title)
        buttons = page.get_by_role("button", name=button, exact=True).locator("visible=true")
        buttons.first.wait_for()
        assert buttons.count() == 1, f"the {title} tab shows its {button} button {buttons.count()} times"
    assert not page.errors


def test_text_generation(page):
    open_tab(page, "Text generation")
    field(page, "Prompt").fill("Write one sentence about the sea.")
    page.get_by_label("number input for Max new tokens").locator("visible=true").fill("16")
    page.keyboard.press("Tab")
    press(page, "Generate")
    summary = markdown_text(page, r"\d+ tokens in .* s")
    output = field(page, "Output").input_value()
    assert re.search(r"[A-Za-z]{2,}", output), output
    assert "finished:" in summary
    screenshot(page, "text-generation")

    page.get_by_role("tab", name="Next-token lens", exact=True).click()
    press(page, "Show the next-token distribution")
    assert re.search(r"Entropy: [\d.]+ bits before, [\d.]+ bits after", markdown_text(page, r"Entropy:"))
    screenshot(page, "text-generation-lens")
    assert not page.errors


def test_an_empty_seed_box_gives_a_random_seed(page):
    open_tab(page, "Text generation")
    field(page, "Prompt").fill("Name a colour.")
    page.get_by_label("number input for Max new tokens").locator("visible=true").fill("2")
    page.keyboard.press("Tab")
    seeds = []
    for _ in range(2):
        press(page, "Generate")
        summary = markdown_text(page, r"\d+ tokens in .* s")
        seeds.append(re.search(r"seed (\d+)", summary).group(1))
        page.get_by_text(re.compile(r"\d+ tokens in")).locator("visible=true").first.evaluate("e => e.remove()")
    assert seeds[0] != seeds[1], seeds


def test_an_empty_prompt_gets_a_message_not_a_traceback(page):
    open_tab(page, "Text generation")
    field(page, "Prompt").fill("   ")
    press(page, "Generate")
    message = visible_text(page, r"The prompt is empty", timeout=60_000)
    assert "Traceback" not in page.content()
    screenshot(page, "text-generation-error")
    assert message.is_visible()


def test_translation(page):
    open_tab(page, "Translation")
    field(page, "Text").fill("The weather is nice today.")
    press(page, "Translate")
    translated = wait_for_text(page, field(page, "Translation"))
    route = markdown_text(page, r"en→de via")
    assert re.search(r"\w{2,}", translated)
    assert translated.strip() != "The weather is nice today."
    if "instruct LLM" in route:  # no specialist on this machine: the page says that the LLM stood in
        assert re.search(r"specialist model not .*the instruct LLM .* translated by prompt", route), route
    screenshot(page, "translation")
    assert not page.errors


def test_question_answering(page):
    open_tab(page, "Question answering")  # the example question and context are filled in
    press(page, "Answer")
    summary = markdown_text(page, r"Model:")
    assert "1889" in page.locator("h3").locator("visible=true").first.inner_text()
    assert "Score:" in summary, summary
    screenshot(page, "question-answering")
    assert not page.errors


def test_sentiment(page):
    open_tab(page, "Sentiment")  # the example text is filled in: "I loved this film, the acting was wonderful."
    press(page, "Classify")
    markdown_text(page, r"Model:")
    label = page.get_by_test_id("label-output-value").locator("visible=true").first
    label.wait_for()
    assert label.inner_text().strip().lower() == "positive"
    screenshot(page, "sentiment")
    assert not page.errors


def test_speech_to_text(page, tmp_path):
    audio = speech_wav(tmp_path / "fox.wav", "The quick brown fox jumps over the lazy dog.")
    open_tab(page, "Speech to text")
    page.get_by_role("button", name="Upload file").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Click to Upload").locator("visible=true").first.click()
    chooser.value.set_files(str(audio))
    page.get_by_role("button", name="Play", exact=True).wait_for()  # the upload has arrived: the player shows it
    press(page, "Transcribe")
    transcript = wait_for_text(page, field(page, "Transcript")).lower()
    assert "quick" in transcript and "fox" in transcript and "lazy" in transcript, transcript
    assert "English" in markdown_text(page, r"segments ·")
    page.locator("a[href$='fox.srt']").first.wait_for()  # the subtitles are offered for download
    screenshot(page, "speech-to-text")
    assert not page.errors


def test_engine_tab(page):
    open_tab(page, "Engine")
    press(page, "Refresh")
    status = markdown_text(page, r"Device:")
    assert "dtype" in status and "budget" in status
    for name in ("SmolLM2-135M-Instruct", "whisper-base", "distilbert-sst2"):  # the registered models are listed
        page.get_by_text(name, exact=True).locator("visible=true").first.wait_for()
    screenshot(page, "engine")
    assert not page.errors
