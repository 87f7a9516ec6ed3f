"""Speech to text: options and windowing logic; the loading and decoding paths on a tiny random Whisper; every bad
input answered with its message (through the engine and through the tab's ``/transcribe`` endpoint, which stays
up); and the real packaged models (whisper-base, whisper-tiny.en) on speech made with espeak-ng: word error rate,
language detection, subtitles that parse back in order, silence and music without invented text, and a 5-minute
file within a memory limit, measured in its own process."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app_process import serving
from engine import (CancelledError, Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError,
                    ModelLoadError, ModelSpec, Registry, Settings)
from engine.audio import SAMPLE_RATE
from engine.subtitles import parse_srt, parse_vtt, to_srt, to_vtt
from engine.tasks import speech

REPO = Path(__file__).resolve().parent.parent
MODELS_CACHE = REPO / ".cache" / "test-models"  # the packaged conversion happens once per machine, not per run
SENTENCES = [
    "The weather today is sunny and warm.",
    "Please open the window before you leave the room.",
    "My brother works at the hospital in the city.",
    "We will meet at the train station tomorrow morning.",
    "She bought three apples and a loaf of bread.",
    "The children are playing football in the park.",
    "Can you tell me where the library is?",
    "I would like a cup of coffee with milk.",
    "The meeting has been moved to next Friday.",
    "He reads the newspaper every day after breakfast.",
]
PAUSE_S = 0.8  # between sentences
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


# --- helpers ----------------------------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's length, after lower-casing and removing punctuation."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1]))
    return row[len(hyp)] / max(1, len(ref))


def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 16 kHz float32 (espeak writes 22.05 kHz WAV; soxr resamples it)."""
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True,
                         capture_output=True).stdout
    import io

    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def sentences_audio(sentences: list[str], pause_s: float = PAUSE_S, **kw) -> np.ndarray:
    pause = np.zeros(round(pause_s * SAMPLE_RATE), np.float32)
    return np.concatenate([part for s in sentences for part in (espeak(s, **kw), pause)])


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic music: plucked chords of harmonic tones on a major scale, 0.4 s a chord."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(0.4 * SAMPLE_RATE)) / SAMPLE_RATE
    notes = 220 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    chords = []
    for _ in range(round(seconds / 0.4)):
        chord = rng.choice(notes, size=2)
        chords.append(0.15 * np.exp(-3 * t) * sum(np.sin(2 * np.pi * f * h * t) / h for f in chord for h in (1, 2, 3)))
    return np.concatenate(chords).astype(np.float32)


def assert_ordered(segments) -> None:
    for a, b in zip(segments, segments[1:]):
        assert a.start <= a.end <= b.start <= b.end, (a, b)


# --- fixtures ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_whisper: Path, tiny_whisper_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine whose speech models are the tiny random fixtures: one by its file, one by its folder."""
    registry = Registry()
    registry.add(ModelSpec("tiny-whisper", "speech-to-text", "whisper", f"path:{tiny_whisper}", default=True))
    registry.add(ModelSpec("tiny-whisper-en", "speech-to-text", "whisper", f"path:{tiny_whisper_en.parent}"))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, max_audio_seconds=120,
                             max_upload_bytes=2_000_000), registry)
    yield engine
    engine.close()


@pytest.fixture
def one_temperature(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random model's babble fails every quality check, so each window would be decoded at all six temperatures
    (224 tokens each); one is enough for tests of the paths around the decoder."""
    monkeypatch.setattr(speech, "TEMPERATURES", (0.0,))


@pytest.fixture(scope="module")
def real() -> Engine:
    """The packaged Whisper models (base, tiny.en), converted from their PyPI packages once per machine."""
    engine = Engine(Settings(cache_dir=MODELS_CACHE, offline=True, device="cpu", dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The ten sentences spoken by espeak-ng with pauses (about 35 s: two windows), and their text."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = write_wav(tmp_path_factory.mktemp("speech") / "sentences.wav", sentences_audio(SENTENCES))
    return path, " ".join(SENTENCES)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, type, str]]:
    """Each bad input: its file, the error it must raise, and words its message must contain."""
    folder = tmp_path_factory.mktemp("bad")
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    zero = folder / "zero-length.wav"
    with wave.open(str(zero), "wb") as w:  # a valid header and no frames
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    tone = (0.3 * np.sin(np.arange(4 * SAMPLE_RATE) / 10)).astype(np.float32)
    corrupt = folder / "corrupt.flac"  # 2000 bytes in the middle overwritten with noise
    sf.write(corrupt, tone + 0.01 * np.random.default_rng(1).standard_normal(len(tone)).astype(np.float32),
             SAMPLE_RATE, format="FLAC")
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2: len(data) // 2 + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    corrupt.write_bytes(bytes(data))
    header_only = folder / "header-only.wav"
    header_only.write_bytes(write_wav(folder / "tone.wav", tone).read_bytes()[:30])
    garbage = folder / "garbage.ogg"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    text = folder / "notes.wav"
    text.write_text("These are my notes, not a recording.\n" * 20)
    image = folder / "photo.mp3"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    long = folder / "long.wav"  # 121 s (limit: 120 s) in 968 kB (limit: 2 MB)
    sf.write(long, np.zeros(121 * 8000, np.float32), 8000, subtype="PCM_U8")
    large = folder / "large.wav"  # 40 s in 7.7 MB
    sf.write(large, np.zeros((40 * 48000, 2), np.float32), 48000, subtype="PCM_16")
    return {
        "empty": (empty, InvalidInputError, "empty"),
        "zero-length": (zero, InvalidInputError, "0 seconds"),
        "corrupt": (corrupt, InvalidInputError, "damaged"),
        "header only": (header_only, InvalidInputError, "damaged"),
        "garbage": (garbage, InvalidInputError, "not audio or it is damaged"),
        "not audio (text)": (text, InvalidInputError, "text file, not audio"),
        "not audio (image)": (image, InvalidInputError, "PNG image, not audio"),
        "too long": (long, InputTooLargeError, "limit is 2 min"),
        "too large": (large, InputTooLargeError, "limit is 2.0 MB"),
    }


# --- options and windows (no model) -----------------------------------------------------------------------------------
def test_options_accept_codes_names_and_auto():
    spec = ModelSpec("m", "speech-to-text", "whisper", "path:/nowhere")
    assert speech.check_options(spec, None, "transcribe") == speech.TranscribeOptions(None, "transcribe")
    assert speech.check_options(spec, "auto", "translate").language is None
    assert speech.check_options(spec, " German ", "Transcribe").language == "de"
    assert speech.check_options(spec, "fr", "translate") == speech.TranscribeOptions("fr", "translate")


@pytest.mark.parametrize("language, task, message", [
    ("klingon", "transcribe", "Unknown language 'klingon'"),
    ("en", "summarize", "Unknown task 'summarize'"),
])
def test_bad_options_say_what_to_give(language, task, message):
    spec = ModelSpec("m", "speech-to-text", "whisper", "path:/nowhere")
    with pytest.raises(InvalidOptionsError, match=message):
        speech.check_options(spec, language, task)


def test_an_english_only_model_refuses_other_languages_and_translation():
    spec = Registry().get("whisper-tiny.en")
    assert speech.check_options(spec, "auto", "transcribe").language is None
    with pytest.raises(InvalidOptionsError, match="English-only.*cannot translate.*whisper-base"):
        speech.check_options(spec, None, "translate")
    with pytest.raises(InvalidOptionsError, match="English-only.*cannot transcribe German"):
        speech.check_options(spec, "de", "transcribe")


def test_windows_cover_the_audio_and_end_at_pauses():
    rng = np.random.default_rng(0)
    # 95 s of "speech" (noise bursts of 1.7 s) with a 0.3 s pause after each burst
    burst, pause = round(1.7 * SAMPLE_RATE), round(0.3 * SAMPLE_RATE)
    unit = np.concatenate([0.3 * rng.standard_normal(burst), np.zeros(pause)]).astype(np.float32)
    samples = np.tile(unit, 48)[: 95 * SAMPLE_RATE]
    windows = speech.plan_windows(samples)
    assert windows[0][0] == 0 and windows[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # contiguous, no overlap
    assert all(0 < end - start <= speech.WINDOW_S * SAMPLE_RATE for start, end in windows)
    for _, cut in windows[:-1]:  # each cut falls inside a pause, not inside a burst
        assert cut % len(unit) >= burst, cut / SAMPLE_RATE


def test_short_audio_is_one_window():
    assert speech.plan_windows(np.zeros(SAMPLE_RATE, np.float32)) == [(0, SAMPLE_RATE)]
    assert speech.plan_windows(np.zeros(30 * SAMPLE_RATE, np.float32)) == [(0, 30 * SAMPLE_RATE)]


def test_tokens_become_segments_and_a_cut_short_tail_is_set_apart():
    from whisper.tokenizer import get_tokenizer

    tk = get_tokenizer(True)
    model = speech.WhisperModel.__new__(speech.WhisperModel)  # only the tokenizer is needed to parse tokens
    model.tokenizer = tk

    def ts(seconds: float) -> int:
        return tk.timestamp_begin + round(seconds / speech.FRAME_S)

    start, end = 10 * SAMPLE_RATE, 40 * SAMPLE_RATE  # a window from 10 s to 40 s
    whole = [ts(0), *tk.encode(" Hello there."), ts(2.0), ts(2.4), *tk.encode(" General Kenobi."), ts(4.0)]
    segments, tail = model._segments(whole, start, end)
    assert tail is None
    assert segments == [speech.Segment(10.0, 12.0, "Hello there."), speech.Segment(12.4, 14.0, "General Kenobi.")]

    cut = whole[:-1] + [ts(4.0), ts(27.5), *tk.encode(" You are a")]
    segments, tail = model._segments(cut, start, end)
    assert [s.text for s in segments] == ["Hello there.", "General Kenobi."]
    # decoded again from the end of the last whole segment (as whisper.transcribe seeks), kept as 37.5 s otherwise
    assert tail.start_sample == 14 * SAMPLE_RATE and tail.segment == speech.Segment(37.5, 40.0, "You are a")

    plain = tk.encode(" no timestamps at all")
    segments, tail = model._segments(plain, start, end)
    assert segments == [speech.Segment(10.0, 40.0, "no timestamps at all")] and tail is None


# --- tiny random Whisper: loading and the decoding path ---------------------------------------------------------------
def test_tiny_whisper_loads_from_a_file_and_from_a_folder(tiny: Engine):
    for name, english_only in (("tiny-whisper", False), ("tiny-whisper-en", True)):
        served = tiny.served("speech-to-text", name)
        assert served.english_only is english_only
        assert 0 < served.nbytes < 50_000_000


def test_tiny_whisper_transcribes_with_progress_and_ordered_segments(tiny: Engine, one_temperature):
    reports = []
    samples = (0.3 * np.sin(np.arange(2 * SAMPLE_RATE) * 2 * np.pi * 220 / SAMPLE_RATE)).astype(np.float32)
    t = tiny.transcribe((SAMPLE_RATE, samples), progress=lambda f, m: reports.append((f, m)))
    assert isinstance(t, speech.Transcript) and t.model == "tiny-whisper" and t.task == "transcribe"
    assert t.duration_s == pytest.approx(2.0, abs=0.01)
    assert len(t.language_probs) == speech.TOP_LANGUAGES and t.language == t.language_probs[0][0]
    assert [p for _, p in t.language_probs] == sorted((p for _, p in t.language_probs), reverse=True)
    assert_ordered(t.segments)
    assert all(0 <= s.start <= s.end <= t.duration_s for s in t.segments)
    assert reports[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in reports)
    assert t.timings.windows >= 1 and t.timings.model_s > 0


def test_tiny_whisper_forced_language_and_translation(tiny: Engine, one_temperature):
    samples = (0.3 * np.sin(np.arange(SAMPLE_RATE) / 7)).astype(np.float32)
    t = tiny.transcribe((SAMPLE_RATE, samples), language="de", task="translate")
    assert t.language == "de" and t.task == "translate" and t.language_probs  # detection is still shown


def test_failed_windows_are_decoded_again_hotter(tiny: Engine, monkeypatch: pytest.MonkeyPatch):
    import whisper

    temperatures, decode = [], whisper.decode

    def counting(model, features, options):
        temperatures.append((options.temperature, features.shape[0]))
        return decode(model, features, options)

    monkeypatch.setattr(whisper, "decode", counting)
    monkeypatch.setattr(speech, "TEMPERATURES", (0.0, 0.5))
    tiny.transcribe((SAMPLE_RATE, (0.3 * np.sin(np.arange(SAMPLE_RATE) / 7)).astype(np.float32)))
    assert temperatures == [(0.0, 1), (0.5, 1)]  # random weights babble: repetitive or unsure, so retried once


def test_hotter_decodes_draw_from_a_fixed_seed(tiny: Engine, monkeypatch: pytest.MonkeyPatch):
    """The sampled decodes give the same text for the same audio whatever was drawn before them, and leave torch's
    global generator where it was."""
    import torch
    import whisper

    texts, decode = [], whisper.decode

    def recording(model, features, options):
        out = decode(model, features, options)
        texts.append([r.text for r in out])
        return out

    monkeypatch.setattr(whisper, "decode", recording)
    monkeypatch.setattr(speech, "TEMPERATURES", (1.0,))
    audio = (SAMPLE_RATE, (0.3 * np.sin(np.arange(2 * SAMPLE_RATE) / 5)).astype(np.float32))
    for seed in (1, 2):
        torch.manual_seed(seed)
        tiny.transcribe(audio)
    torch.manual_seed(3)
    before = torch.rand(4)
    torch.manual_seed(3)
    tiny.transcribe(audio)
    assert torch.equal(torch.rand(4), before)  # the global generator as it was
    assert len(texts) == 3 and texts[0] == texts[1] == texts[2] and texts[0][0]


@pytest.mark.parametrize("text, repetitive", [
    ("\u200bA\u200bA\u200bA\u200bA\u200bA\u200bA\u200bA", True), ("Nu vădă, nu vădă, nu vădă, nu vădă, nu vădă.", True),
    ("la la la la la la", True), ("The cat sat on the mat and the dog sat on the rug.", False),
    ("Yes, yes, yes.", False), ("Good morning, good morning, good morning to you all.", False)])
def test_short_texts_that_repeat_a_word_or_two_count_as_failed(text: str, repetitive: bool):
    assert speech._repetitive(text) is repetitive


def test_english_only_checkpoint_refuses_translation_after_loading(tiny: Engine, one_temperature):
    samples = (0.3 * np.sin(np.arange(SAMPLE_RATE) / 7)).astype(np.float32)
    with pytest.raises(InvalidOptionsError, match="English-only"):
        tiny.transcribe((SAMPLE_RATE, samples), "tiny-whisper-en", task="translate")
    t = tiny.transcribe((SAMPLE_RATE, samples), "tiny-whisper-en")
    assert t.language == "en" and t.language_probs == ()


def test_silence_is_answered_without_running_the_decoder(tiny: Engine):
    t = tiny.transcribe((SAMPLE_RATE, np.zeros(5 * SAMPLE_RATE, np.float32)))
    assert t.no_speech and t.text == "" and t.segments == () and "No speech found" in t.message
    assert t.timings.windows == 0


def test_a_cancelled_request_stops(tiny: Engine):
    samples = (0.3 * np.sin(np.arange(100 * SAMPLE_RATE) / 7)).astype(np.float32)
    request = speech.submit(tiny, (SAMPLE_RATE, samples))
    request.cancel()
    with pytest.raises(CancelledError):
        request.result()


# --- the decoding step (engine/tasks/whisper_step.py) -----------------------------------------------------------------
def _tiny_pair(path: Path, weights: str) -> tuple:
    """Two copies of a tiny random Whisper: whisper's own, and one decoding through the engine's step (oneDNN fp32
    products, the same through weights packed for oneDNN (``packed``, where torch can), or int8 weights)."""
    import torch
    import whisper

    from engine.tasks import whisper_step
    from engine.weights import apply_onednn, packing_available

    if weights == "packed" and not packing_available():
        pytest.skip("this torch cannot pack weights for oneDNN")
    plain = whisper.load_model(str(path), device="cpu").eval()
    fast = whisper.load_model(str(path), device="cpu").eval()
    apply_onednn(fast, (torch.nn.Linear, whisper.model.Linear))
    if weights == "int8":
        whisper_step.quantize_decoder(fast.decoder)
    whisper_step.install(fast.decoder, pack=weights == "packed")
    return plain, fast


@pytest.mark.parametrize("weights", ["fp32", "packed", "int8"])
def test_the_decoding_step_gives_whispers_own_logits(tiny_whisper: Path, weights: str):
    """Cached calls through the step (a first call of several tokens, single tokens, then several new tokens after
    cached ones) against one uncached pass of whisper's own forward over the whole sequence, batch of two."""
    import torch

    plain, fast = _tiny_pair(tiny_whisper, weights)
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 1500, 64, generator=generator)
    tokens = torch.randint(0, 5000, (2, 12), generator=generator)
    cache: dict = {}
    with torch.inference_mode():
        calls = [(0, 3), *[(i, i + 1) for i in range(3, 9)], (9, 12)]
        got = torch.cat([fast.decoder(tokens[:, a:b], audio, kv_cache=cache) for a, b in calls], dim=1)
        want = plain.decoder(tokens, audio)
        uncached = fast.decoder(tokens, audio)  # the step's model without a cache: whisper's forward, same layers
    scale = want.abs().max().item()
    if weights in ("fp32", "packed"):  # the same arithmetic in another order: float32 rounding
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(uncached, want, rtol=0, atol=1e-4 * scale)  # packed: q/k/v as parts of one
    else:  # int8 weights and bf16 activations: close to fp32, and the same as the same layers without the step
        assert (got - want).abs().max().item() < 0.05 * scale
        assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
        torch.testing.assert_close(got, uncached, rtol=0, atol=0.01 * scale)


@pytest.mark.parametrize("weights", ["fp32", "packed"])
def test_whisper_decode_through_the_step_finds_the_same_tokens(tiny_whisper: Path, weights: str):
    """whisper.decode itself, greedy on two windows and beam search on one (it reorders the cache's rows; whisper's
    own beam search takes one window at a time), with and without the step."""
    import torch
    import whisper

    plain, fast = _tiny_pair(tiny_whisper, weights)
    mel = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        features = plain.embed_audio(mel)
        for options, audio in ((whisper.DecodingOptions(language="en", fp16=False, sample_len=16), features),
                               (whisper.DecodingOptions(language="en", fp16=False, sample_len=16, beam_size=2),
                                features[:1])):
            want, got = whisper.decode(plain, audio, options), whisper.decode(fast, audio, options)
            assert [r.tokens for r in got] == [r.tokens for r in want], options
            assert [round(r.avg_logprob, 3) for r in got] == [round(r.avg_logprob, 3) for r in want]


@pytest.mark.parametrize("weights", ["fp32", "packed"])
def test_beam_search_reordering_moves_the_steps_cache_rows(tiny_whisper: Path, weights: str):
    """whisper's rearrange_kv_cache (``cache[m] = cache[m][rows]`` for each self-attention key/value module) on the
    step's cache: the next step continues each row from the history it was given."""
    import torch

    plain, fast = _tiny_pair(tiny_whisper, weights)
    generator = torch.Generator().manual_seed(2)
    audio = torch.randn(1, 1500, 64, generator=generator)  # one window for every row, as in whisper's beam search
    tokens = torch.randint(0, 5000, (2, 8), generator=generator)
    cache: dict = {}
    blocks = fast.decoder.blocks
    with torch.inference_mode():
        fast.decoder(tokens[:, :3], audio, kv_cache=cache)
        for i in range(3, 6):
            fast.decoder(tokens[:, i:i + 1], audio, kv_cache=cache)
        for position, rows in ((6, [1, 0]), (7, [1, 1])):  # rows swapped, then row 1 continued twice
            cache.update({m: cache[m][rows].detach() for m in [b.attn.key for b in blocks] +
                          [b.attn.value for b in blocks]})
            tokens = tokens[rows]
            got = fast.decoder(tokens[:, position:position + 1], audio, kv_cache=cache)
            want = plain.decoder(tokens[:, :position + 1], audio.expand(2, -1, -1))[:, -1:]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * want.abs().max().item())


def test_speech_weights_setting_is_resolved_per_device():
    from engine.device import cpu_bf16_units
    from engine.weights import resolve_speech_weights

    assert resolve_speech_weights("auto", "cpu")[0] == ("int8" if cpu_bf16_units() else "fp32")
    assert resolve_speech_weights("auto", "cpu", "float32")[0] == "fp32"  # an explicit dtype: that precision
    assert resolve_speech_weights("INT8", "cpu", "float32")[0] == "int8"
    assert resolve_speech_weights("auto", "cuda")[0] == "dtype"
    with pytest.raises(InvalidOptionsError, match="CPU only"):
        resolve_speech_weights("int8", "cuda")
    with pytest.raises(InvalidOptionsError, match="speech weights"):
        Settings(speech_weights="int3")


def test_a_corrupt_checkpoint_is_a_load_error(tmp_path: Path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint at all" * 100)
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    registry = Registry()
    registry.add(ModelSpec("broken", "speech-to-text", "whisper", f"path:{bad}"))
    registry.add(ModelSpec("nothing", "speech-to-text", "whisper", f"path:{empty}"))
    engine = Engine(Settings(cache_dir=tmp_path, offline=True), registry)
    samples = (SAMPLE_RATE, np.ones(SAMPLE_RATE, np.float32) * 0.1)
    with pytest.raises(ModelLoadError, match="broken"):
        engine.transcribe(samples, "broken")
    with pytest.raises(ModelLoadError, match=r"no openai-whisper checkpoint \(\.pt\)"):
        engine.transcribe(samples, "nothing")


# --- bad input: each answered with its message ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty", "zero-length", "corrupt", "header only", "garbage",
                                  "not audio (text)", "not audio (image)", "too long", "too large"])
def test_bad_audio_is_answered_with_its_message(tiny: Engine, bad_files, case: str):
    path, error, message = bad_files[case]
    with pytest.raises(error, match=re.escape(message)):
        tiny.transcribe(path)
    with pytest.raises(error, match=re.escape(message)):
        tiny.transcribe(path.read_bytes())


def test_bad_options_are_refused_before_decoding(tiny: Engine, bad_files):
    with pytest.raises(InvalidOptionsError, match="Unknown language"):
        tiny.transcribe(bad_files["empty"][0], language="elvish")


# --- the tab: /transcribe through gradio_client -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(tiny_whisper: Path):
    """The Speech to text tab alone, launched on a free port, on an engine with the built-in models (the default
    is the packaged whisper-base) and the tiny random one, with limits of 120 s and 2 MB."""
    import gradio as gr
    from apps import speech as speech_tab

    registry = Registry()
    registry.add(ModelSpec("tiny-whisper", "speech-to-text", "whisper", f"path:{tiny_whisper}"))
    engine = Engine(Settings(cache_dir=MODELS_CACHE, offline=True, device="cpu", dtype="float32",
                             max_audio_seconds=120, max_upload_bytes=2_000_000), registry)
    with gr.Blocks() as demo:
        speech_tab.build(engine).render()
    with serving(demo) as client:
        yield client
    engine.close()


def test_transcribe_endpoint_has_the_documented_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/transcribe"]
    assert [p["parameter_name"] for p in info["parameters"]][:3] == ["audio", "language", "task"]
    assert len(info["returns"]) == 3  # the text, the detected language, the segments


@needs_espeak
def test_transcribe_endpoint_answers_with_text_language_and_segments(client, tmp_path: Path):
    from gradio_client import handle_file

    path = write_wav(tmp_path / "fox.wav", espeak("The quick brown fox jumps over the lazy dog."))
    text, detected, segments = client.predict(audio=handle_file(str(path)), api_name="/transcribe")  # as smoke.py
    assert word_error_rate("The quick brown fox jumps over the lazy dog.", text) < 0.3, text
    assert detected["label"] == "English (en)" and detected["confidences"][0]["confidence"] > 0.5
    assert segments["headers"] == ["start (s)", "end (s)", "text"] and segments["data"][0][2] in text
    text, detected, _ = client.predict(audio=handle_file(str(path)), language="en", task="translate",
                                       model="whisper-base", api_name="/transcribe")
    assert "fox" in text.lower()


def test_transcribe_endpoint_reaches_other_models(client, tmp_path: Path, one_temperature):
    from gradio_client import handle_file

    path = write_wav(tmp_path / "tone.wav", (0.3 * np.sin(np.arange(SAMPLE_RATE) / 7)).astype(np.float32))
    text, detected, _ = client.predict(audio=handle_file(str(path)), language="de", model="tiny-whisper",
                                       api_name="/transcribe")
    assert isinstance(text, str) and detected  # random weights: text or "No speech found"


def test_transcribe_endpoint_says_no_speech_for_silence(client, tmp_path: Path):
    from gradio_client import handle_file

    path = write_wav(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE, np.float32))
    text, detected, segments = client.predict(audio=handle_file(str(path)), api_name="/transcribe")
    assert text == "" and detected["label"] == speech.NO_SPEECH and segments["data"] in ([], [["", "", ""]])


@pytest.mark.parametrize("case", ["empty", "zero-length", "corrupt", "garbage", "not audio (text)", "too long",
                                  "too large"])
def test_transcribe_endpoint_answers_bad_audio_and_stays_up(client, bad_files, tmp_path: Path, case: str):
    from gradio_client import handle_file

    path, _, message = bad_files[case]
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(audio=handle_file(str(path)), api_name="/transcribe")
    good = write_wav(tmp_path / "ok.wav", np.zeros(SAMPLE_RATE, np.float32))
    assert client.predict(audio=handle_file(str(good)), api_name="/transcribe")[1]["label"] == speech.NO_SPEECH


def test_transcribe_endpoint_refuses_an_unknown_language(client, tmp_path: Path):
    from gradio_client import handle_file

    good = write_wav(tmp_path / "ok.wav", np.zeros(SAMPLE_RATE, np.float32))
    with pytest.raises(Exception, match="Unknown language 'elvish'"):
        client.predict(audio=handle_file(str(good)), language="elvish", api_name="/transcribe")


def test_the_tab_relays_progress_and_writes_the_four_downloads(tiny: Engine, one_temperature, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    from apps import speech as speech_tab

    seen = []
    samples = (0.3 * np.sin(np.arange(SAMPLE_RATE) / 7)).astype(np.float32)
    path = write_wav(tmp_path / "my talk (final).wav", samples)
    t = speech_tab.run_with_progress(tiny, str(path), None, "auto", "transcribe",
                                     lambda fraction, desc: seen.append((fraction, desc)))
    assert t.model == "tiny-whisper" and seen and seen[-1][0] == 1.0

    from apps.common import Downloads

    downloads = Downloads(keep=2)
    monkeypatch.setattr(speech_tab, "DOWNLOADS", downloads)
    segments = (speech.Segment(0.0, 1.5, "Hello there."), speech.Segment(1.5, 2.0, "<b>Bold</b> & more"))
    spoken = dataclasses.replace(t, segments=segments, text="Hello there. <b>Bold</b> & more", no_speech=False)
    for _ in range(3):
        files = [Path(f) for f in speech_tab.subtitle_files(spoken, str(path))]
    assert [f.name for f in files] == [f"my_talk_final.{x}" for x in ("srt", "vtt", "txt", "json")]
    assert parse_srt(files[0].read_text()) == list(segments) == parse_vtt(files[1].read_text())
    assert json.loads(files[3].read_text())["language"] == t.language
    assert len(list(downloads.root.iterdir())) == 2  # older transcripts' files are removed
    assert speech_tab.subtitle_files(dataclasses.replace(t, segments=(), no_speech=True), str(path)) == []


# --- the real packaged models -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model", ["whisper-base", "whisper-tiny.en"])
def test_espeak_sentences_are_transcribed_under_15_percent_wer(real: Engine, spoken, model: str):
    path, reference = spoken
    t = real.transcribe(path, model)
    wer = word_error_rate(reference, t.text)
    print(f"{model}: WER {wer:.3f}, real-time factor {t.timings.real_time_factor:.2f} "
          f"({t.duration_s:.1f} s of audio in {t.timings.model_s:.1f} s)")
    assert wer < 0.15, t.text
    assert t.language == "en" and not t.no_speech
    if model == "whisper-base":
        assert t.language_probs[0][0] == "en" and t.language_probs[0][1] > 0.5
    assert_ordered(t.segments)
    assert t.segments[-1].end <= t.duration_s + 0.01
    # no text twice at the window boundary: each sentence's last word appears as often as it is spoken
    for sentence in SENTENCES:
        last = words(sentence)[-1]
        assert words(t.text).count(last) == words(reference).count(last), (last, t.text)
    # subtitles parse back with ordered, non-overlapping times and the same words
    for writer, parser in ((to_srt, parse_srt), (to_vtt, parse_vtt)):
        parsed = parser(writer(t.segments))
        assert len(parsed) == len(t.segments)
        assert_ordered(parsed)
        assert all(p.end > p.start for p in parsed)
        assert words(" ".join(p.text for p in parsed)) == words(t.text)


@pytest.mark.slow
def test_reduced_precision_keeps_the_transcript(real: Engine, spoken):
    """The packaged whisper-base with its encoder in bf16 and its decoder's weights in int8 (what auto picks on a CPU
    with bf16 units) against fp32: the word error rate within one point."""
    path, reference = spoken
    exact = real.transcribe(path, "whisper-base")
    import torch

    reduced = Engine(Settings(cache_dir=MODELS_CACHE, offline=True, device="cpu", encoder_dtype="bfloat16",
                              speech_weights="int8"))
    try:
        served = reduced.served("speech-to-text", "whisper-base")
        assert served.weights == "int8" and served.encoder_dtype == torch.bfloat16
        t = reduced.transcribe(path, "whisper-base")
    finally:
        reduced.close()
    wer, wer_exact = word_error_rate(reference, t.text), word_error_rate(reference, exact.text)
    print(f"whisper-base bf16 encoder + int8 decoder: WER {wer:.3f} (fp32 {wer_exact:.3f})")
    assert abs(wer - wer_exact) <= 0.01 and wer < 0.15, (t.text, exact.text)


@pytest.mark.slow
@needs_espeak
def test_base_detects_and_translates_german(real: Engine, tmp_path: Path):
    path = write_wav(tmp_path / "de.wav", sentences_audio(["Guten Morgen.", "Wie geht es dir heute?",
                                                          "Ich trinke gerne Kaffee."], voice="de", speed=140))
    t = real.transcribe(path, "whisper-base", task="translate")
    assert t.language == "de" and t.language_probs[0][0] == "de", t.language_probs
    assert {"good", "morning", "coffee"} <= set(words(t.text)), t.text


@pytest.mark.slow
def test_silence_and_music_yield_no_invented_text(real: Engine):
    rng = np.random.default_rng(0)
    quiet_room = (0.0005 * rng.standard_normal(10 * SAMPLE_RATE)).astype(np.float32)
    for name, samples in (("silence", np.zeros(10 * SAMPLE_RATE, np.float32)), ("quiet room", quiet_room),
                          ("music", music(20)), ("other music", music(30, seed=1))):
        for model in ("whisper-base", "whisper-tiny.en"):
            t = real.transcribe((SAMPLE_RATE, samples), model)
            assert t.no_speech and t.text == "" and t.message.startswith("No speech found"), (name, model, t.text)


@pytest.mark.slow
@needs_espeak
def test_speech_over_music_is_still_transcribed(real: Engine):
    spoken = sentences_audio(SENTENCES[3:6])
    samples = spoken + 0.5 * music(len(spoken) / SAMPLE_RATE + 1)[: len(spoken)]
    for model in ("whisper-base", "whisper-tiny.en"):
        t = real.transcribe((SAMPLE_RATE, samples), model)
        assert word_error_rate(" ".join(SENTENCES[3:6]), t.text) < 0.15, (model, t.text)


LONG_RUN = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from engine import Engine, Settings

    def peak_kb():  # VmHWM: the peak resident memory so far
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1])

    engine = Engine(Settings(cache_dir=Path(sys.argv[2]), offline=True, device="cpu", dtype="float32"))
    model = sys.argv[3]
    engine.served("speech-to-text", model)  # loaded: its weights are not part of what the transcription uses
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = peak_kb()
    reports = []
    t0 = time.perf_counter()
    t = engine.transcribe(sys.argv[1], model, progress=lambda f, m: reports.append(f))
    wall = time.perf_counter() - t0
    print(json.dumps({"growth_mb": (peak_kb() - before) / 1024, "wall_s": wall, "rtf": t.timings.real_time_factor,
                      "duration_s": t.duration_s, "text": t.text, "reports": reports, "windows": t.timings.windows,
                      "segments": [[s.start, s.end, s.text] for s in t.segments]}))
""")
MEMORY_LIMIT_MB = 600  # peak memory growth allowed while transcribing, whatever the length


@pytest.mark.slow
@needs_espeak
def test_a_five_minute_file_is_transcribed_within_the_memory_limit(tmp_path: Path, real: Engine):
    real.served("speech-to-text", "whisper-tiny.en")  # the packaged conversion, before the measured process
    one = sentences_audio(SENTENCES, pause_s=1.2)  # about 40 s
    reps = int(np.ceil(300 / (len(one) / SAMPLE_RATE)))
    samples = np.tile(one, reps)[: 300 * SAMPLE_RATE]
    path = write_wav(tmp_path / "five-minutes.wav", samples)
    out = subprocess.run([sys.executable, "-c", LONG_RUN, str(path), str(MODELS_CACHE), "whisper-tiny.en"],
                         capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"5-minute file, whisper-tiny.en: peak memory growth {result['growth_mb']:.0f} MB, "
          f"real-time factor {result['rtf']:.2f}, {result['windows']} windows")
    assert result["growth_mb"] < MEMORY_LIMIT_MB
    assert result["duration_s"] == pytest.approx(300, abs=0.1)
    reports = result["reports"]
    assert reports[-1] == 1.0 and reports == sorted(reports) and len(reports) > 2  # progress, in order
    segments = [speech.Segment(*s) for s in result["segments"]]
    assert_ordered(segments)
    assert segments[-1].start > 270  # it went on to the end
    spoken = " ".join(SENTENCES * reps)
    heard = words(result["text"])
    assert len(heard) == pytest.approx(len(words(spoken)) * 300 / (reps * len(one) / SAMPLE_RATE), rel=0.1)
