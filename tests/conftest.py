"""Shared test setup: never touch the hub, the markers for the slower tiers, and the tiny-model fixtures.

The tiny models are built once per session from ``tiny_models.py`` (see there for what each looks like); each fixture
returns the saved folder (the ``.pt`` file for Whisper), loadable exactly as a downloaded checkpoint would be.
"""
from __future__ import annotations

import os

# Before anything imports huggingface_hub or transformers, which read these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import tiny_models  # noqa: E402

MODELS_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "test-models"  # as test_generation.py


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end to end on real packaged models (minutes, needs them on disk)")
    config.addinivalue_line("markers", "browser: drives the UI in a real browser (playwright)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Llama chat model, SmolLM2-Instruct layout (ChatML template)."""
    return tiny_models.build_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPT-2 base model: no chat template, no pad token."""
    return tiny_models.build_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Marian English to German, opus-mt-en-de layout."""
    return tiny_models.build_marian(tmp_path_factory.mktemp("tiny-marian-en-de"), src="en", tgt="de")


@pytest.fixture(scope="session")
def tiny_marian_de_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Marian German to English, opus-mt-de-en layout."""
    return tiny_models.build_marian(tmp_path_factory.mktemp("tiny-marian-de-en"), src="de", tgt="en")


@pytest.fixture(scope="session")
def tiny_m2m100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """M2M100 many-to-many translation, m2m100_418M layout."""
    return tiny_models.build_m2m100(tmp_path_factory.mktemp("tiny-m2m100"))


@pytest.fixture(scope="session")
def tiny_distilbert_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Extractive QA, distilbert-base-cased-distilled-squad layout."""
    return tiny_models.build_distilbert_qa(tmp_path_factory.mktemp("tiny-distilbert-qa"))


@pytest.fixture(scope="session")
def tiny_distilbert_sst2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binary sentiment (NEGATIVE/POSITIVE), distilbert-base-uncased-finetuned-sst-2-english layout."""
    return tiny_models.build_distilbert_classifier(tmp_path_factory.mktemp("tiny-distilbert-sst2"))


@pytest.fixture(scope="session")
def tiny_xlm_roberta_sentiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three-class sentiment (negative/neutral/positive), twitter-xlm-roberta-base-sentiment layout."""
    return tiny_models.build_roberta_classifier(tmp_path_factory.mktemp("tiny-xlm-roberta-sentiment"))


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multilingual openai-whisper checkpoint (``.pt``)."""
    return tiny_models.build_whisper(tmp_path_factory.mktemp("tiny-whisper"), multilingual=True)


@pytest.fixture(scope="session")
def tiny_whisper_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """English-only openai-whisper checkpoint (``.pt``)."""
    return tiny_models.build_whisper(tmp_path_factory.mktemp("tiny-whisper-en"), multilingual=False)


@pytest.fixture(scope="module")
def offline_engine(tmp_path_factory: pytest.TempPathFactory):
    """The built-in registry, offline, with an empty hub cache: the specialists (QA, sentiment) are hub models that
    are not on this machine. The instruct LLM is the packaged SmolLM2 (converted once per machine, shared with the
    other test files)."""
    from engine import Engine, Settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hub-cache")))
        engine = Engine(Settings(cache_dir=MODELS_CACHE, offline=True, device="cpu", dtype="float32"))
        yield engine
        engine.close()
