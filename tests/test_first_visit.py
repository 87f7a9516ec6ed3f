"""No silent waits: the packaged models are converted at install, the Engine tab says where each model stands, and a
model that loads for the page is named, sized and shown with progress.

The first-request timing itself is a benchmark (``bench/first_request.py``), not a timed test.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from engine import Engine, ModelSpec, Registry, Settings
from engine import packaged
from engine.sources import availability

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = Registry()
    registry.add(ModelSpec("tiny-llama", "text-generation", "causal-lm", f"path:{tiny_causal_lm}", chat=True,
                           default=True, size="tiny, 1 MB"))
    registry.add(ModelSpec("not-here", "text-generation", "causal-lm", "path:/nowhere/at/all"))
    registry.add(ModelSpec("hub-only", "text-generation", "causal-lm", "hub:nobody/not-in-the-cache", revision="main"))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True), registry)
    yield engine
    engine.close()


def test_availability_of_each_kind_of_source(tiny: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    on_disk = availability(tiny.spec("text-generation", "tiny-llama"), tiny.settings)
    assert on_disk.state == "on disk" and on_disk.ready and not on_disk.how
    missing = availability(tiny.spec("text-generation", "not-here"), tiny.settings)
    assert missing.state == "missing" and not missing.ready and "LLM_LAB_MODELS" in missing.how
    hub = availability(tiny.spec("text-generation", "hub-only"), tiny.settings)
    assert hub.state == "download" and "hf download nobody/not-in-the-cache --revision main" in hub.how
    # the packaged SmolLM2 in a fresh cache: installed, not converted yet (and checking converts nothing)
    smol = tiny.registry.get("SmolLM2-135M-Instruct")
    fresh = availability(smol, Settings(cache_dir=tmp_path / "fresh"))
    assert fresh.state == "packaged, not converted" and "scripts/setup.sh" in fresh.how
    assert not (tmp_path / "fresh" / "packaged" / "smollm2-135m-instruct").exists()


def test_is_ready_follows_the_conversion(tmp_path: Path) -> None:
    cache = tmp_path / "packaged"
    assert not packaged.is_ready("whisper-tiny.en", cache)
    packaged.materialize("whisper-tiny.en", cache)
    assert packaged.is_ready("whisper-tiny.en", cache)
    (cache / "whisper" / "tiny.en.pt").write_bytes(b"damaged")
    assert not packaged.is_ready("whisper-tiny.en", cache)
    assert packaged.is_ready("all-minilm-l6-v2", cache)  # used from the wheel as it is


def test_setup_converts_into_llm_lab_cache(tmp_path: Path) -> None:
    """``python -m engine.packaged`` (what scripts/setup.sh runs) converts into $LLM_LAB_CACHE/packaged, where the
    app then finds every packaged model ready. SmolLM2 is left out here (a minute of CPU): the same code path."""
    env = dict(os.environ, LLM_LAB_CACHE=str(tmp_path / "cache"))
    code = ("import engine.packaged as p; p.PACKAGED = {k: v for k, v in p.PACKAGED.items() if 'whisper' in k}; "
            "raise SystemExit(p.main())")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    settings = Settings.from_env(env)
    assert settings.cache_dir == tmp_path / "cache"
    registry = Registry()
    for name in ("whisper-base", "whisper-tiny.en"):
        assert availability(registry.get(name), settings).state == "packaged"


def test_setup_script_converts_once() -> None:
    text = (REPO / "scripts" / "setup.sh").read_text()
    assert "python -m engine.packaged" in text and "LLM_LAB_CACHE" in text


def test_load_notice_names_the_model_and_reports_progress(tiny: Engine) -> None:
    from apps.loading import load_steps, with_load_notice

    tiny.unload("tiny-llama")
    assert load_steps(tiny, "text-generation", "tiny-llama") == ["Loading tiny-llama into memory (tiny, 1 MB)"]
    assert load_steps(tiny, "text-generation", "no-such-model") == []  # the task reports unknown names itself

    calls = []

    def event(prompt: str, model: str) -> str:
        return tiny.generate(prompt, model, max_new_tokens=2, temperature=0).model

    class Tracker:
        def __call__(self, fraction, desc=None):
            calls.append((fraction, desc))

    wrapped = with_load_notice(tiny, "text-generation")(event)
    params = inspect.signature(wrapped).parameters
    assert list(params) == ["prompt", "model", "progress"] and isinstance(params["progress"].default, gr.Progress)
    assert wrapped("Hello", "tiny-llama", Tracker()) == "tiny-llama"  # gradio passes the tracker last
    assert calls[0] == (0.0, "Loading tiny-llama into memory (tiny, 1 MB)…")
    assert calls[-1][0] == 1.0 and calls[-1][1].startswith("tiny-llama loaded in")
    assert tiny.models.is_loaded("tiny-llama")
    calls.clear()
    assert wrapped("Hello", model="tiny-llama") == "tiny-llama" and calls == []  # loaded: nothing to say

    def streaming(prompt: str, model: str):
        yield from ("a", "b")

    tiny.unload("tiny-llama")
    assert list(with_load_notice(tiny, "text-generation")(streaming)("x", "tiny-llama", Tracker())) == ["a", "b"]
    assert tiny.models.is_loaded("tiny-llama")


def test_preload_loads_the_default_model_when_it_is_here(tiny: Engine) -> None:
    from apps.loading import preload

    tiny.unload("tiny-llama")
    preload(tiny, "text-generation")
    assert tiny.models.is_loaded("tiny-llama")
    tiny.unload("tiny-llama")
    preload(tiny, "text-generation", background=True).join(timeout=120)
    assert tiny.models.is_loaded("tiny-llama")
    assert preload(tiny, "none") is None
