"""Building models while other threads serve (engine/loading.py): concurrent builds keep their own dtypes, torch's
default dtype never changes, and a build at bf16 is the one transformers itself makes."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, LlamaForCausalLM

from engine.loading import building, pretrained

ROUNDS = 12


def dtypes(model: torch.nn.Module) -> dict[str, torch.dtype]:
    return {name: t.dtype for name, t in model.state_dict().items()}


def test_builds_in_two_threads_keep_their_dtypes_and_leave_the_default_alone(tiny_distilbert_qa: Path,
                                                                            tiny_causal_lm: Path) -> None:
    """A bf16 and an fp32 build started together, again and again, while a third thread watches the default dtype
    (plain from_pretrained: 20 of 30 rounds went wrong, see engine/loading.py)."""
    seen: set[torch.dtype] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(torch.get_default_dtype())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(ROUNDS):
            start, built = threading.Barrier(2), {}

            def build(key: str, cls: type, folder: Path, dtype: torch.dtype) -> None:
                start.wait()
                built[key] = pretrained(cls, folder, dtype)

            threads = [threading.Thread(target=build, args=("qa", AutoModelForQuestionAnswering, tiny_distilbert_qa,
                                                            torch.bfloat16)),
                       threading.Thread(target=build, args=("lm", AutoModelForCausalLM, tiny_causal_lm, torch.float32))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert set(dtypes(built["qa"]).values()) == {torch.bfloat16}
            assert set(p.dtype for p in built["lm"].parameters()) == {torch.float32}
    finally:
        done.set()
        watcher.join()
    assert seen == {torch.float32} and torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("cls, fixture", [(AutoModelForCausalLM, "tiny_causal_lm"),
                                          (AutoModelForSeq2SeqLM, "tiny_marian"),
                                          (AutoModelForQuestionAnswering, "tiny_distilbert_qa")])
def test_a_bf16_build_is_the_one_transformers_makes(cls: type, fixture: str, request: pytest.FixtureRequest) -> None:
    """The same weights in the same dtypes as ``from_pretrained(dtype=bf16)`` (Marian's saved logits bias included),
    buffers computed at build time untouched (Llama's rotary frequencies stay fp32), the config saying bf16."""
    folder = request.getfixturevalue(fixture)
    ours = pretrained(cls, folder, torch.bfloat16)
    theirs = cls.from_pretrained(folder, dtype=torch.bfloat16)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    assert {n: t.dtype for n, t in ours.named_buffers()} == {n: t.dtype for n, t in theirs.named_buffers()}
    assert ours.config.dtype == torch.bfloat16


def test_modules_transformers_keeps_in_fp32_stay_fp32(tiny_causal_lm: Path) -> None:
    class KeepNorms(LlamaForCausalLM):
        _keep_in_fp32_modules_strict = ["norm"]

    ours, theirs = pretrained(KeepNorms, tiny_causal_lm, torch.bfloat16), KeepNorms.from_pretrained(
        tiny_causal_lm, dtype=torch.bfloat16)
    assert dtypes(ours) == dtypes(theirs)
    assert dtypes(ours)["model.norm.weight"] == torch.float32 and dtypes(ours)["lm_head.weight"] == torch.bfloat16


def test_a_build_that_changes_the_default_dtype_is_put_right() -> None:
    with building():
        torch.set_default_dtype(torch.float64)
    assert torch.get_default_dtype() == torch.float32


def test_a_program_whose_default_is_bf16_still_gets_a_whole_fp32_whisper(
        tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """whisper.load_model builds in the default dtype: at bf16, its layer norms met fp32 inputs ("mixed dtype") and
    every transcription failed, as in CI once a racing build had left bf16 the default."""
    from engine import Engine, Settings
    from engine.registry import ModelSpec, Registry
    from engine.tasks import speech

    monkeypatch.setattr(speech, "TEMPERATURES", (0.0,))  # a random model's babble would be retried at six
    registry = Registry()
    registry.add(ModelSpec("tiny-whisper", "speech-to-text", "whisper", f"path:{tiny_whisper}", default=True))
    engine = Engine(Settings(cache_dir=tmp_path, offline=True), registry)
    tone = (0.3 * np.sin(np.arange(2 * speech.SAMPLE_RATE) * 2 * np.pi * 220 / speech.SAMPLE_RATE)).astype(np.float32)
    torch.set_default_dtype(torch.bfloat16)
    try:
        transcript = engine.transcribe((speech.SAMPLE_RATE, tone))
        assert torch.get_default_dtype() == torch.bfloat16  # the program's own choice, kept
    finally:
        torch.set_default_dtype(torch.float32)
        engine.close()
    model = engine.served("speech-to-text", "tiny-whisper").model
    assert {p.dtype for p in model.decoder.parameters()} == {torch.float32}
    assert transcript.duration_s == pytest.approx(2.0, abs=0.01)
