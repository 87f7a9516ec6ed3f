"""The Fine-tune tab as a visitor uses it, in headless Chromium: the bundled reviews' label counts, the packaged MiniLM
fine-tuned whole in the page (one epoch), its metrics, baselines and confusion matrix; then the new model picked in
the Sentiment tab's list and used on a new sentence; an extractive reader fine-tuned on the bundled questions (one
epoch), its held-out answers, then used in the Question answering tab. Screenshots go to ``artifacts/screenshots/``."""
from __future__ import annotations

import shutil

import pytest

from ui import field, markdown_text, open_tab, pick_model, press, screenshot

pytestmark = pytest.mark.browser

NAME = "browser-sentiment"
QA_NAME = "browser-qa"


@pytest.fixture
def cleanup():
    """The model trained here lives in the machine's model cache, like a visitor's: remove it afterwards."""
    from engine.config import default_cache_dir

    yield
    for name in (NAME, QA_NAME):
        shutil.rmtree(default_cache_dir() / "trained" / name, ignore_errors=True)


def _block(page, label: str):
    return page.locator("div.block").filter(has=page.get_by_text(label, exact=True)).locator("visible=true").last


def test_fine_tune_on_the_bundled_reviews_then_classify_with_it(page, cleanup):
    open_tab(page, "Fine-tune")
    counts = markdown_text(page, r"Label counts")
    assert "| neutral | 200 | 25 |" in counts.replace("\t", " ") or "neutral" in counts, counts
    assert "Ready: 600 examples, 3 labels" in counts, counts

    assert page.get_by_label("Whole model").locator("visible=true").is_checked()  # the default method
    epochs = page.get_by_label("number input for Epochs").locator("visible=true")
    epochs.fill("1")
    epochs.press("Enter")
    field(page, "Model name").fill(NAME)
    press(page, "Fine-tune")

    status = markdown_text(page, rf"Saved as {NAME}", timeout=600_000)
    assert "held-out examples" in status, status
    results = _block(page, "Results on the held-out examples (fine-tuned models and baselines)")
    results.get_by_text("baseline: majority class", exact=False).first.wait_for()
    assert "TF-IDF + logistic regression" in results.inner_text()
    confusion = _block(page, "Confusion matrix (rows: true label, columns: predicted)")
    confusion.get_by_text("positive", exact=True).first.wait_for()
    for label in ("negative", "neutral", "positive"):
        assert label in confusion.inner_text()
    assert "precision" in _block(page, "Per-label precision and recall").inner_text()
    screenshot(page, "finetune")

    open_tab(page, "Sentiment")
    pick_model(page, NAME)  # the model just trained is in the list
    field(page, "Text").first.fill("The staff were rude and the room was dirty. Never again.")
    press(page, "Classify")
    summary = markdown_text(page, rf"Model:\s*{NAME}")
    assert NAME in summary
    label = page.get_by_test_id("label-output-value").locator("visible=true").first
    label.wait_for()
    assert label.inner_text().strip().lower() == "negative"  # one epoch of the whole model gets this one right
    screenshot(page, "finetune-sentiment")
    assert not page.errors


def test_fine_tune_a_reader_on_the_bundled_questions_then_answer_with_it(page, cleanup):
    open_tab(page, "Fine-tune")
    open_tab(page, "QA reader")
    assert page.get_by_text("An extractive reader", exact=False).locator("visible=true").count()
    epochs = page.get_by_label("number input for Epochs").locator("visible=true")
    epochs.fill("1")
    epochs.press("Enter")
    field(page, "Model name").fill(QA_NAME)
    press(page, "Fine-tune the reader")

    status = markdown_text(page, rf"Saved as {QA_NAME}", timeout=600_000)
    assert "held-out questions" in status and "before training" in status, status
    answers = _block(page, "Held-out questions: the reader's answers")
    answers.get_by_text("expected", exact=True).first.wait_for()
    assert "the reader's answer" in answers.inner_text()
    assert "before training" in _block(page, "Held-out scores per epoch").inner_text()
    screenshot(page, "finetune-qa")

    open_tab(page, "Question answering")
    pick_model(page, QA_NAME)
    field(page, "Question").fill("Who built the bridge?")
    field(page, "Context").fill("The old bridge over the Tarrow was built by Ada Moss in 1901. It was repaired in "
                                "1950 after a flood.")
    press(page, "Answer")
    summary = markdown_text(page, r"Score:")
    assert "Characters" in summary, summary  # a span of the context, whatever one epoch picked
    screenshot(page, "finetune-qa-answer")
    assert not page.errors
