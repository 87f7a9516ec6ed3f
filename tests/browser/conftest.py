"""The browser suite's setup: the app in its own process, headless Chromium driven by Playwright, screenshots.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it): Playwright cannot download its own browser
here. Each test module gets its own app; each test a fresh page. What the tests do on a page is in ``ui.py``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from app_process import AppProcess, running_app

CHROMIUM = os.environ.get("LLM_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator["object"]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """``python app.py`` on a free loopback port, with the machine's model cache, offline."""
    with running_app(tmp_path_factory.mktemp("browser-app")) as app:
        yield app


@pytest.fixture
def page(browser, app: AppProcess):
    """A fresh page on the app, its tabs rendered. Browser console errors are collected in ``page.errors``."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(app.url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Engine", exact=True).wait_for(timeout=60_000)
    yield page
    context.close()
