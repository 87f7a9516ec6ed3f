"""The three Lab tabs (Embeddings, Pretrain, Fine-tune) in a Chinese browser: their intro, labels, buttons and
sub-tabs show in Simplified Chinese, no translation key is left raw on the page, and nothing throws. Screenshots go
to ``artifacts/screenshots/<tab>-zh.png``."""
from __future__ import annotations

import pytest

from ui import screenshot

pytestmark = pytest.mark.browser

TABS = {
    # tab: (its Chinese title, Chinese texts the page must show: intro, a label, a button, a heading or sub-tab)
    "embeddings": ("词向量", ["是用几何关系承载意义的向量", "词元嵌入表取自", "查找近邻", "求解类比", "句向量"]),
    "pretrain": ("预训练", ["语言模型就是通过", "训练文本", "1. 训练文本", "统计参数量并试跑几步计时",
                         "更多训练配方", "学习率调度"]),
    "fine-tune": ("微调", ["让预训练模型适应一个任务", "基础模型", "开始微调", "训练轮数", "语言模型"]),
}


@pytest.mark.parametrize("tab", list(TABS))
def test_a_lab_tab_in_chinese(browser, app, tab: str) -> None:
    title, texts = TABS[tab]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{app.url}?tab={tab}", wait_until="domcontentloaded")
        page.wait_for_function("t => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === t",
                               arg=title, timeout=60_000)
        for text in texts:
            page.get_by_text(text).first.wait_for(state="visible", timeout=30_000)
        body = page.locator("body").inner_text()
        assert "__i18n__" not in body and "translation_metadata" not in body
        screenshot(page, f"{tab}-zh")
        assert not errors
    finally:
        context.close()
