"""Bad input and faults, through the public API as a script (or an attacker) would send them, against one running app.

Each hostile input must get a clear message in the engine's words (not a traceback, not the catch-all "something went
wrong", not gradio's "has not enabled verbose error reporting"), quickly; afterwards the app must still be up and the
same tab must still answer a normal request. At the end every tab still works and nothing is left behind: the app
wrote nothing of its own to ``TMPDIR``, and gradio's upload folder (``GRADIO_TEMP_DIR``) holds only the files that were
uploaded, which gradio keeps by design (see docs/testing.md).

Also registered through ``LLM_LAB_MODELS``: a model whose folder is missing, one whose safetensors file is corrupt, and
a Whisper model whose checkpoint is not one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from app_process import ROOT, files_under, running_app, speech_wav
from apps.common import UNEXPECTED

pytestmark = pytest.mark.slow  # one app of its own, and a model run after every case

GRADIO_GENERIC = "has not enabled verbose error reporting"  # gradio's text for an exception it does not show
MAX_AUDIO_SECONDS = 60  # the app's limit in this test, so that a too-long recording stays small
ANSWER_WITHIN_S = 60.0  # a refusal must not hang (generous: the machine is shared)
NOT_IN_CHOICES = r"is not in the list of choices"  # gradio's own check of dropdown and radio values: clear too


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile request: ``expect`` is a regular expression the message must match (None: it must succeed)."""

    id: str
    tab: str  # which tab's normal request must work afterwards
    api: str
    kwargs: Callable[[dict[str, Path]], dict[str, Any]] | dict[str, Any]
    expect: str | None
    words: str = "engine"  # "engine": the engine's message; "gradio": gradio's own validation, before our code


def C(id: str, tab: str, api: str, kwargs, expect: str | None, words: str = "engine"):
    return pytest.param(Case(id, tab, api, kwargs, expect, words), id=id)


def audio(name: str, **more) -> Callable[[dict[str, Path]], dict[str, Any]]:
    return lambda files: dict(audio=handle_file(str(files[name])), **more)


LONG = 20_001  # one character beyond the default limit of 20,000
RTL_EMOJI = "\u202eمرحبا بالعالم 🙂🔥👨\u200d👩\u200d👧 שלום"
CONTROL = "\x07\x1b[31mred\x1b[0m\r\n\x7f\x08\x0c tab\there"

CASES = [
    # Text generation: /generate and /next_token
    C("generate-empty", "generation", "/generate", dict(prompt=""), r"The prompt is empty"),
    C("generate-whitespace", "generation", "/generate", dict(prompt=" \n\t \u00a0"), r"The prompt is empty"),
    C("generate-huge", "generation", "/generate", dict(prompt="a" * LONG), r"20,001 characters; the limit is 20,000"),
    C("generate-binary", "generation", "/generate", dict(prompt="\x00\x01\x02\xff\xfe"), r"binary data"),
    C("generate-int-prompt", "generation", "/generate", dict(prompt=12345), r"prompt must be text, not int"),
    C("generate-none-prompt", "generation", "/generate", dict(prompt=None), r"prompt must be text"),
    C("generate-billion-tokens", "generation", "/generate", dict(prompt="Hi", max_new_tokens=10**9),
      r"max_new_tokens must be between 1 and \d+, got 1000000000"),
    C("generate-zero-tokens", "generation", "/generate", dict(prompt="Hi", max_new_tokens=0),
      r"max_new_tokens must be between 1"),
    C("generate-text-tokens", "generation", "/generate", dict(prompt="Hi", max_new_tokens="lots"),
      r"max_new_tokens must be a whole number"),
    C("generate-negative-temperature", "generation", "/generate", dict(prompt="Hi", temperature=-1),
      r"temperature must be between 0 \(greedy\) and \d+, got -1"),
    C("generate-huge-temperature", "generation", "/generate", dict(prompt="Hi", temperature=1e308),
      r"temperature must be between"),
    C("generate-negative-top-k", "generation", "/generate", dict(prompt="Hi", top_k=-1), r"top_k must be between"),
    C("generate-zero-top-p", "generation", "/generate", dict(prompt="Hi", top_p=0), r"top_p must be above 0"),
    C("generate-absurd-penalty", "generation", "/generate", dict(prompt="Hi", repetition_penalty=100),
      r"repetition_penalty must be between 1 \(off\) and"),
    C("generate-negative-seed", "generation", "/generate", dict(prompt="Hi", seed=-1), r"seed must be a whole number"),
    C("generate-text-seed", "generation", "/generate", dict(prompt="Hi", seed="abc"), r"seed must be a whole number"),
    C("generate-100-stops", "generation", "/generate", dict(prompt="Hi", stop="\n".join(f"s{i}" for i in range(100))),
      r"At most \d+ stop sequences, got 100"),
    C("generate-huge-system-prompt", "generation", "/generate", dict(prompt="Hi", system_prompt="x" * 30_000),
      r"system prompt has 30,000 characters"),
    C("generate-unknown-model", "generation", "/generate", dict(prompt="Hi", model="no-such-model"),
      r"Unknown model 'no-such-model'\. Available: SmolLM2-135M-Instruct"),
    C("generate-path-model", "generation", "/generate", dict(prompt="Hi", model="path:/etc"),
      r"Unknown model 'path:/etc'\. Available: "),
    C("generate-other-task-model", "generation", "/generate", dict(prompt="Hi", model="whisper-base"),
      r"Unknown model 'whisper-base'\. Available: SmolLM2"),
    C("generate-missing-model-folder", "generation", "/generate", dict(prompt="Hi", model="missing-llm"),
      r"Model 'missing-llm': its folder '/nonexistent/llm-lab-model' does not exist"),
    C("generate-corrupt-model-file", "generation", "/generate", dict(prompt="Hi", model="corrupt-llm"),
      r"Model 'corrupt-llm' could not be loaded from .*corrupt"),
    C("next-token-huge-top-k", "generation", "/next_token", dict(prompt="The sky is", top_k=10**6),
      r"top_k must be between"),
    C("next-token-binary", "generation", "/next_token", dict(prompt="\x00"), r"binary data"),
    C("generate-rtl-emoji", "generation", "/generate", dict(prompt=RTL_EMOJI, max_new_tokens=3), None),
    C("generate-control-characters", "generation", "/generate", dict(prompt=CONTROL, max_new_tokens=3), None),
    C("generate-top-k-off", "generation", "/generate", dict(prompt="Hi", top_k=0, max_new_tokens=2), None),
    # Translation: /translate and /score_translation
    C("translate-empty", "translation", "/translate", dict(text=""), r"text to translate is empty"),
    C("translate-huge", "translation", "/translate", dict(text="a" * LONG), r"20,001 characters"),
    C("translate-binary", "translation", "/translate", dict(text="Hello\x00world"), r"binary data"),
    C("translate-int", "translation", "/translate", dict(text=123), r"must be text, not int"),
    C("translate-unknown-language", "translation", "/translate", dict(text="Hello there.", target_lang="xx"),
      r"Unknown target language 'xx'\. Known languages: en \(English\)"),
    C("translate-same-languages", "translation", "/translate",
      dict(text="Hallo Welt.", source_lang="de", target_lang="de"), r"both German"),
    C("translate-unknown-model", "translation", "/translate", dict(text="Hello there.", model="nope"),
      r"Unknown model 'nope'\. Available: auto, "),
    C("translate-speech-model", "translation", "/translate", dict(text="Hello there.", model="whisper-base"),
      r"whisper-base is a speech-to-text model, not a translation model"),
    C("translate-emoji-only", "translation", "/translate", dict(text="🙂🙂🙂"),
      r"Could not tell the source language"),
    C("score-no-references", "translation", "/score_translation", dict(hypotheses="a", references=""),
      r"Paste the references"),
    C("score-mismatched-lines", "translation", "/score_translation", dict(hypotheses="a\nb\nc", references="a"),
      r"3 hypotheses but 1 reference"),
    # Question answering: /answer
    C("answer-empty-question", "qa", "/answer", dict(question="", context="The sky is blue."), r"question is empty"),
    C("answer-empty-context", "qa", "/answer", dict(question="What colour?", context=""), r"context is empty"),
    C("answer-huge-question", "qa", "/answer", dict(question="q" * 5000, context="The sky is blue."),
      r"5,000 characters; the limit is 1,000"),
    C("answer-binary-context", "qa", "/answer", dict(question="What colour?", context="The sky\x00 is blue."),
      r"context contains binary data"),
    C("answer-huge-context", "qa", "/answer", dict(question="What colour?", context="c" * LONG), r"20,001 characters"),
    # Sentiment: /classify
    C("classify-empty", "sentiment", "/classify", dict(text=""), r"text is empty"),
    C("classify-binary", "sentiment", "/classify", dict(text="\x00\xff\xfe"), r"binary data"),
    C("classify-huge", "sentiment", "/classify", dict(text="b" * LONG), r"20,001 characters"),
    C("classify-list", "sentiment", "/classify", dict(text=["fine"]), r"text must be text, not list"),
    C("classify-emoji-only", "sentiment", "/classify", dict(text="🙂🙂🙂"), None),
    # Speech to text: /transcribe
    C("transcribe-nothing", "speech", "/transcribe", dict(audio=None), r"Record something or upload an audio file"),
    C("transcribe-random-bytes", "speech", "/transcribe", audio("random.wav"), r"not audio or it is damaged"),
    C("transcribe-text-file", "speech", "/transcribe", audio("text.wav"), r"a text file, not audio"),
    C("transcribe-empty-file", "speech", "/transcribe", audio("empty.wav"), r"audio file is empty \(0 bytes\)"),
    C("transcribe-too-long", "speech", "/transcribe", audio("long.wav"), r"the limit is 1 min"),
    C("transcribe-unknown-language", "speech", "/transcribe", audio("yes.wav", language="klingon"),
      r"Unknown language 'klingon'"),
    C("transcribe-unknown-task", "speech", "/transcribe", audio("yes.wav", task="dance"), NOT_IN_CHOICES, "gradio"),
    C("transcribe-path-model", "speech", "/transcribe", audio("yes.wav", model="path:/etc"), NOT_IN_CHOICES, "gradio"),
    C("transcribe-model-not-on-disk", "speech", "/transcribe", audio("yes.wav", model="whisper-small"),
      r"whisper-small' is not on this machine .*offline mode is on"),
    C("transcribe-corrupt-checkpoint", "speech", "/transcribe", audio("yes.wav", model="corrupt-whisper"),
      r"corrupt-whisper.*(is not a valid openai-whisper checkpoint|could not be loaded)"),
    C("transcribe-string-not-file", "speech", "/transcribe", dict(audio="/nonexistent/x.wav"), GRADIO_GENERIC,
      "gradio"),  # gradio refuses a file input that is not a file payload before our code runs, in its own words
    C("transcribe-silence", "speech", "/transcribe", audio("silence.wav"), None),
    C("transcribe-truncated-wav", "speech", "/transcribe", audio("truncated.wav"), None),
    # Engine tab
    C("unload-unknown", "engine", "/unload_model", dict(name="not-loaded"), NOT_IN_CHOICES, "gradio"),
    C("unload-nothing", "engine", "/unload_model", dict(name=None), r"Pick a loaded model to unload"),
]

NORMAL: dict[str, tuple[str, Callable[[dict[str, Path]], dict[str, Any]], Callable[[Any], bool]]] = {
    # tab -> a cheap ordinary request that runs the tab's model (or, for translation, its scorer) and a check of it
    "generation": ("/generate", lambda f: dict(prompt="Hi", max_new_tokens=1, temperature=0), lambda r: r != ""),
    "translation": ("/score_translation", lambda f: dict(hypotheses="The cat sat.", references="The cat sat."),
                    lambda r: r["bleu"] > 99),
    "qa": ("/answer", lambda f: dict(question="What colour is the sky?", context="The sky is blue."),
           lambda r: "blue" in r["answer"].lower()),
    "sentiment": ("/classify", lambda f: dict(text="What a wonderful day!"), lambda r: r["label"] != ""),
    "speech": ("/transcribe", lambda f: dict(audio=handle_file(str(f["yes.wav"]))), lambda r: "yes" in r[0].lower()),
    "engine": ("/engine_status", lambda f: {}, lambda r: "Device" in r[0]),
}


def write_inputs(folder: Path) -> dict[str, Path]:
    """The files the cases upload."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("random.wav", "text.wav", "empty.wav", "long.wav", "silence.wav",
                                              "truncated.wav", "yes.wav")}
    files["random.wav"].write_bytes(np.random.default_rng(7).bytes(20_000))
    files["text.wav"].write_text("hello, this is not audio at all\n" * 20)
    files["empty.wav"].write_bytes(b"")
    sf.write(files["long.wav"], np.zeros(16_000 * (MAX_AUDIO_SECONDS + 1), dtype=np.int16), 16_000)
    sf.write(files["silence.wav"], np.zeros(16_000 * 2, dtype=np.float32), 16_000)
    speech_wav(files["yes.wav"], "Yes.")
    fox = speech_wav(folder / "fox-full.wav", "The quick brown fox jumps over the lazy dog.")
    files["truncated.wav"].write_bytes(fox.read_bytes()[:3000])  # a WAV header and a few milliseconds
    return files


def broken_models(folder: Path, tiny_causal_lm: Path) -> list[dict]:
    """LLM_LAB_MODELS entries for a missing folder, a corrupt safetensors file and a bogus Whisper checkpoint."""
    corrupt = folder / "corrupt-llm"
    shutil.copytree(tiny_causal_lm, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 8 + os.urandom(4096))  # header length 0, then noise
    bogus = folder / "corrupt-whisper"
    bogus.mkdir()
    (bogus / "model.pt").write_bytes(b"this is not a torch checkpoint\n" * 100)
    return [{"name": "missing-llm", "task": "text-generation", "family": "causal-lm",
             "source": "path:/nonexistent/llm-lab-model"},
            {"name": "corrupt-llm", "task": "text-generation", "family": "causal-lm", "source": f"path:{corrupt}"},
            {"name": "corrupt-whisper", "task": "speech-to-text", "family": "whisper", "source": f"path:{bogus}"}]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_causal_lm):
    folder = tmp_path_factory.mktemp("hostile")
    files = write_inputs(folder / "inputs")
    env = {"LLM_LAB_MODELS": json.dumps({"models": broken_models(folder, tiny_causal_lm)}),
           "LLM_LAB_MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS)}
    with running_app(folder / "app", env=env) as app:
        client = Client(app.url, verbose=False)
        for tab in ("generation", "speech"):  # load the models once, outside the timed cases
            normal(client, files, tab)
        yield app, client, files


def call(client: Client, api: str, kwargs: dict[str, Any]) -> tuple[bool, Any, float]:
    """(succeeded, the result or the error message, seconds)."""
    t0 = time.perf_counter()
    try:
        return True, client.predict(api_name=api, **kwargs), time.perf_counter() - t0
    except Exception as e:  # gradio_client raises AppError for gr.Error, and other types for other failures
        return False, str(e), time.perf_counter() - t0


def normal(client: Client, files: dict[str, Path], tab: str) -> None:
    api, kwargs, check = NORMAL[tab]
    ok, result, _ = call(client, api, kwargs(files))
    assert ok, f"after that, a normal {api} request failed: {result}"
    assert check(result), f"after that, a normal {api} request gave {result!r}"


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(lab, case: Case):
    app, client, files = lab
    kwargs = case.kwargs(files) if callable(case.kwargs) else case.kwargs
    ok, answer, seconds = call(client, case.api, kwargs)
    assert seconds < ANSWER_WITHIN_S, f"{case.id} took {seconds:.0f} s"
    if case.expect is None:
        assert ok, f"{case.id}: valid (if odd) input was refused: {answer}"
    else:
        assert not ok, f"{case.id} was accepted: {answer!r}"
        assert re.search(case.expect, answer), f"{case.id}: unclear message {answer!r}"
        assert "Traceback" not in answer and 'File "' not in answer
        assert UNEXPECTED not in answer, f"{case.id}: an unexpected error in the app (see its log): {answer!r}"
        if case.words == "engine":
            assert GRADIO_GENERIC not in answer
    assert app.alive() and app.responds(), f"the app went down after {case.id}:\n{app.log()[-2000:]}"
    normal(client, files, case.tab)


def test_every_tab_still_works_and_nothing_is_left_behind(lab):
    app, client, files = lab
    ok, translated, _ = call(client, "/translate", dict(text="The weather is nice today.", source_lang="en",
                                                        target_lang="de"))
    assert ok and translated["text"].strip(), translated
    for tab in NORMAL:
        normal(client, files, tab)
    assert app.alive()
    ours = [p for p in files_under(app.tmpdir) if not str(p).startswith("torchinductor")]  # torch's compiler cache
    assert ours == [], f"the app left files in TMPDIR: {ours}"
    uploaded = {p.name for p in files.values()}
    # gradio also keeps a copy of each example file a tab offers (our own speech clips in assets/): that is its cache
    # of the page's examples, not something left behind by a request.
    examples = {p.name for p in (ROOT / "assets").rglob("*") if p.is_file()}
    kept = {p.name for p in files_under(app.gradio_temp)}
    assert kept <= uploaded | examples, f"gradio's folder holds more than the uploads: {sorted(kept - uploaded)}"
    assert len(kept) >= 5, "the uploads should be in gradio's cache (else GRADIO_TEMP_DIR is not where it keeps them)"
