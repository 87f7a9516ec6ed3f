"""English and Simplified Chinese: every UI string key has both versions, every key the app uses exists, every tab
title is translated, and the Start here map links the same tabs in both languages, tabs that exist."""
from __future__ import annotations

import re
from pathlib import Path

import app
from apps.i18n import I18N, LOCALES, STRINGS
from apps.shell import tab_id

REPO = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_string_has_both_versions() -> None:
    assert LOCALES == ("en", "zh-CN")
    for key, texts in STRINGS.items():
        assert set(texts) == set(LOCALES), key
        assert all(isinstance(t, str) and t.strip() for t in texts.values()), key
        assert CJK.search(texts["zh-CN"]), f"{key}: the Chinese version has no Chinese in it"
        assert texts["en"] != texts["zh-CN"], key
    translations = I18N.translations_dict
    assert translations["zh-CN"] == translations["zh"] == {k: v["zh-CN"] for k, v in STRINGS.items()}
    assert translations["en"] == {k: v["en"] for k, v in STRINGS.items()}


def test_every_key_the_app_uses_exists() -> None:
    used = set()
    for path in [REPO / "app.py", *(REPO / "apps").glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*["']([\w.\-]+)["']\s*\)""", path.read_text(encoding="utf-8")))
    assert used, "no t(...) calls found"
    assert used - set(STRINGS) == set()
    start = (REPO / "apps" / "start.py").read_text(encoding="utf-8")
    for key in re.findall(r'Step\("([\w.]+)", "([\w.]+)"', start):
        assert set(key) <= set(STRINGS)


def test_every_tab_title_is_translated() -> None:
    for title, _ in app.TABS:
        key = f"tab.{tab_id(title)}"
        assert key in STRINGS, f"add {key!r} (English {title!r} and its Chinese) to apps/i18n.py"
        assert STRINGS[key]["en"] == title


def test_the_map_links_the_same_tabs_in_both_languages() -> None:
    tabs = {tab_id(title) for title, _ in app.TABS}
    links = {}
    for locale in LOCALES:
        text = STRINGS["start.map"][locale]
        assert text.startswith("```mermaid\nflowchart") and text.endswith("```")
        links[locale] = re.findall(r'click (\w+) href "\?tab=([\w\-]+)(?:&view=\w+)?" _self', text)
        assert len(links[locale]) == text.count("click "), "every click line is a tab link"
    assert links["en"] == links["zh-CN"]
    assert {target for _, target in links["en"]} <= tabs
    for name in ("pretrain", "fine-tune", "embeddings", "text-generation", "translation", "question-answering",
                 "sentiment", "speech-to-text"):
        assert name in {target for _, target in links["en"]}, name
