"""Temporary files: what the app writes for downloads must not outlive it.

Three tabs offer files to download: Translation (the translation as .txt), Sentiment's batch mode (a CSV) and Speech
to text (SRT, WebVTT, TXT, JSON). Gradio serves a returned file from its own cache (``GRADIO_TEMP_DIR``), where it
also keeps uploads: that is gradio's design, and what it keeps there is bounded by its ``delete_cache`` setting.
"Left behind" means anything else: a file or folder the app created in the system temporary folder (``TMPDIR``) that is
still there after the app has exited.
"""
from __future__ import annotations

import pytest

from app_process import files_under, speech_wav, stop
from ui import field, open_tab, press, wait_for_text

pytestmark = pytest.mark.browser


def test_download_files_do_not_outlive_the_app(page, app, tmp_path):
    open_tab(page, "Translation")
    field(page, "Text").fill("The weather is nice today.")
    press(page, "Translate")
    wait_for_text(page, field(page, "Translation"))
    page.locator("a[href$='.de.txt']").first.wait_for()

    open_tab(page, "Sentiment")
    page.get_by_role("tab", name="Batch", exact=True).click()
    field(page, "Texts, one per line").fill("Great fun.\nAwful food.")
    press(page, "Classify all")
    page.locator("a[href$='sentiment.csv']").first.wait_for(timeout=180_000)

    open_tab(page, "Speech to text")
    page.get_by_role("button", name="Upload file").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Click to Upload").locator("visible=true").first.click()
    chooser.value.set_files(str(speech_wav(tmp_path / "hello.wav", "Hello, this is a test.")))
    page.get_by_role("button", name="Play", exact=True).wait_for()
    press(page, "Transcribe")
    page.locator("a[href$='hello.srt']").first.wait_for(timeout=180_000)

    served = {p.name for p in files_under(app.gradio_temp)}
    assert {"translation.de.txt", "sentiment.csv", "hello.srt"} <= served  # gradio serves copies from its cache
    stop(app.process)
    # torch keeps its compiler cache in TMPDIR/torchinductor_<user>, reused from run to run: torch's, not ours
    left = sorted(str(p) for p in files_under(app.tmpdir) if not str(p).startswith("torchinductor"))
    assert left == [], f"left in TMPDIR after the app exited: {left}"
