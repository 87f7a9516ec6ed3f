"""engine.audio on real files: speech made with espeak-ng, converted with ffmpeg and sox, plus broken inputs.

Needs the espeak-ng, ffmpeg and sox command line tools (CI installs them).
"""
from __future__ import annotations

import re
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import audio
from engine.audio import SAMPLE_RATE, Audio, is_silent, iter_windows, load_audio, speech_fraction
from engine.errors import InputTooLargeError, InvalidInputError, InvalidOptionsError

TOLERANCE_S = 0.050  # decoded duration vs the espeak original, after encoder padding and resampling
SPEECH = "The quick brown fox jumps over the lazy dog. Speech to text should hear every word of this."

# suffix -> ffmpeg output options; the decoder each one must take
CONVERSIONS = {
    "flac": ([], "soundfile"),
    "ogg": (["-c:a", "libvorbis"], "soundfile"),
    "opus": (["-c:a", "libopus"], "soundfile"),
    "mp3": (["-c:a", "libmp3lame"], "soundfile"),
    "webm": (["-c:a", "libopus"], "ffmpeg"),
    "m4a": (["-c:a", "aac"], "ffmpeg"),
}


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(part) for part in cmd], check=True, capture_output=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same sentence as WAV (espeak's 22.05 kHz mono), stereo 44.1 kHz WAV, and every format above."""
    folder = tmp_path_factory.mktemp("audio")
    files = {"wav": folder / "speech.wav", "stereo.wav": folder / "stereo.wav"}
    _run("espeak-ng", "-w", files["wav"], SPEECH)
    _run("sox", files["wav"], "-r", "44100", "-c", "2", files["stereo.wav"])
    for suffix, (options, _) in CONVERSIONS.items():
        files[suffix] = folder / f"speech.{suffix}"
        _run("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", files["wav"], *options, files[suffix])
    return files


@pytest.fixture(scope="session")
def speech_seconds(media: dict[str, Path]) -> float:
    return sf.info(str(media["wav"])).duration


def _assert_16k_mono(result: Audio, seconds: float) -> None:
    assert result.samples.dtype == np.float32 and result.samples.ndim == 1
    assert abs(result.duration_s - seconds) <= TOLERANCE_S, (result.duration_s, seconds)
    assert result.duration_s == pytest.approx(len(result.samples) / SAMPLE_RATE)
    assert np.isfinite(result.samples).all() and 0.05 < np.abs(result.samples).max() <= 1.0


# -- good inputs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["wav", "stereo.wav", *CONVERSIONS])
def test_every_format_decodes_to_16k_mono(media, speech_seconds, suffix):
    result = load_audio(media[suffix])
    _assert_16k_mono(result, speech_seconds)
    assert result.decoder == CONVERSIONS.get(suffix, (None, "soundfile"))[1]
    if suffix == "stereo.wav":
        assert (result.source_rate, result.source_channels) == (44100, 2)
    assert not is_silent(result.samples)


@pytest.mark.parametrize("suffix", ["wav", "mp3", "webm"])
def test_bytes_decode_like_the_file(media, suffix):
    from_file = load_audio(str(media[suffix]))
    from_bytes = load_audio(media[suffix].read_bytes())
    assert from_bytes.decoder == from_file.decoder
    np.testing.assert_allclose(from_bytes.samples, from_file.samples, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [("vbr-no-header.mp3", ["-c:a", "libmp3lame", "-q:a", "7", "-write_xing", "0"]), ("raw.aac", ["-c:a", "aac"])],
)
def test_formats_whose_header_only_estimates_length(media, speech_seconds, monkeypatch, name, options):
    """libsndfile stops a header-less VBR MP3 at its bitrate estimate, and ffprobe guesses
    raw AAC's length: neither guess may cut the audio or call it damaged. Without encoder delay information
    these decode a few frames longer."""
    path = media["wav"].with_name(name)
    _run("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", media["wav"], *options, path)
    result = load_audio(path, max_seconds=60)
    assert result.decoder == "ffmpeg"
    assert result.duration_s == pytest.approx(speech_seconds, abs=0.1)
    if name.endswith(".mp3"):  # without ffmpeg, soundfile does what it can and does not fail
        monkeypatch.setattr(audio.shutil, "which", lambda name: None)
        assert load_audio(path, max_seconds=60).decoder == "soundfile"


def test_lossless_formats_decode_identically(media):
    np.testing.assert_allclose(load_audio(media["flac"]).samples, load_audio(media["wav"]).samples, atol=1e-6)


def test_stereo_resample_keeps_pitch_and_level(tmp_path):
    t = np.arange(44100 * 2) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "tone.wav"
    sf.write(path, np.stack([tone, tone], axis=1), 44100, subtype="PCM_16")
    samples = load_audio(path).samples
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(samples) == pytest.approx(1000, abs=2)
    assert np.abs(samples[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


def test_microphone_tuples(media, speech_seconds):
    data, rate = sf.read(str(media["wav"]), dtype="int16")
    mono = load_audio((rate, data), max_seconds=60)
    _assert_16k_mono(mono, speech_seconds)
    assert (mono.decoder, mono.source_rate, mono.source_channels) == ("array", rate, 1)

    stereo = load_audio((rate, np.stack([data, data], axis=1)))
    assert stereo.source_channels == 2
    np.testing.assert_allclose(stereo.samples, mono.samples, atol=1e-6)

    as_float = load_audio((rate, data.astype(np.float64) / 32768))
    np.testing.assert_allclose(as_float.samples, mono.samples, atol=1e-6)

    native = load_audio((SAMPLE_RATE, np.full(SAMPLE_RATE, 128, dtype=np.uint8)))  # 8-bit PCM: 128 is zero
    assert native.duration_s == 1.0 and not native.samples.any()


def test_long_file_decodes_with_bounded_memory(tmp_path):
    """10 minutes of 44.1 kHz stereo: never held as a stereo float copy, only the 16 kHz output and a block."""
    path = tmp_path / "long.wav"
    t = np.arange(44100 * 60) / 44100
    minute = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * np.random.default_rng(0).standard_normal((len(t), 2))
    minute = (minute * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", 44100, 2, "PCM_16") as fh:
        for _ in range(10):
            fh.write(minute)
    del t, minute
    container = tmp_path / "long.mka"  # not readable by soundfile: the same samples through ffmpeg's pipe
    _run("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-c:a", "copy", container)

    for source, decoder in [(path, "soundfile"), (container, "ffmpeg")]:
        tracemalloc.start()
        try:
            result = load_audio(source, max_seconds=15 * 60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.decoder == decoder
        assert result.duration_s == pytest.approx(600.0, abs=TOLERANCE_S)
        output = result.samples.nbytes  # 38.4 MB; the file as float64 stereo would be 423 MB
        assert peak < 1.5 * output, f"{decoder}: peak {peak / 1e6:.1f} MB for {output / 1e6:.1f} MB of output"
        del result


# -- bad inputs ----------------------------------------------------------------------------------------------


def _error(source, error=InvalidInputError, **limits) -> str:
    with pytest.raises(error) as info:
        load_audio(source, **limits)
    return str(info.value)


def test_empty_inputs(tmp_path, media):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "empty (0 bytes)" in _error(empty)
    assert "empty (0 bytes)" in _error(b"")

    zero_length = tmp_path / "zero.wav"
    sf.write(zero_length, np.zeros((0, 1), dtype=np.int16), 16000)
    assert "no sound (0 seconds" in _error(zero_length)
    assert "empty" in _error((16000, np.zeros(0, dtype=np.int16)))


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nothing.wav")
    assert "not found" in _error(tmp_path)  # a folder is not a file


@pytest.mark.parametrize("suffix", ["wav", "mp3", "webm"])
def test_truncated_files(media, tmp_path, suffix):
    data = media[suffix].read_bytes()
    header_only = tmp_path / f"header.{suffix}"
    header_only.write_bytes(data[:30])
    assert "damaged" in _error(header_only)
    if suffix != "wav":  # a WAV cut in half is a valid, shorter WAV; these say how long they should be
        half = tmp_path / f"half.{suffix}"
        half.write_bytes(data[: len(data) // 2])
        message = _error(half)
        assert "cut short" in message and "header says" in message


def test_corrupt_flac(media, tmp_path):
    data = bytearray(media["flac"].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.flac"
    path.write_bytes(bytes(data))
    assert "damaged" in _error(path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG image"),
        (b"Meeting notes\nNothing to hear here.\n" * 20, "text file"),
        (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "not audio or it is damaged"),
    ],
    ids=["png", "text", "random"],
)
def test_files_that_are_not_audio(tmp_path, monkeypatch, content, says):
    path = tmp_path / "renamed.wav"
    path.write_bytes(content)
    assert says in _error(path)
    assert says in _error(content)
    if says != "not audio or it is damaged":  # recognised without ffmpeg, so not blamed on a missing ffmpeg
        monkeypatch.setattr(audio.shutil, "which", lambda name: None)
        assert says in _error(path)


def test_video_without_sound(tmp_path):
    path = tmp_path / "silent-film.mp4"
    _run("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=5",
         "-c:v", "mpeg4", path)
    assert "no audio track" in _error(path)


def test_too_long(media, speech_seconds):
    for source in (media["wav"], media["webm"]):
        message = _error(source, InputTooLargeError, max_seconds=2)
        said = float(re.search(r"audio is ([\d.]+) s long", message).group(1))
        assert said == pytest.approx(speech_seconds, abs=0.1) and "limit is 2.0 s" in message
    data, rate = sf.read(str(media["wav"]), dtype="int16")
    assert "limit is 2.0 s" in _error((rate, data), InputTooLargeError, max_seconds=2)


def test_too_long_without_duration_in_header(media, monkeypatch):
    """Streams that do not say their length (browser recordings) are stopped while decoding."""
    monkeypatch.setattr(audio, "_probe", lambda path: None)
    assert "limit is 1.0 s" in _error(media["webm"], InputTooLargeError, max_seconds=1)
    assert load_audio(media["webm"], max_seconds=60).source_rate == 0  # unknown without ffprobe


def test_too_large(media):
    size = media["wav"].stat().st_size
    message = _error(media["wav"], InputTooLargeError, max_bytes=size // 2)
    assert f"{size / 1e6:.1f} MB" in message and "the limit is" in message
    assert "the limit is" in _error(media["wav"].read_bytes(), InputTooLargeError, max_bytes=1000)
    assert load_audio(media["wav"], max_bytes=size).decoder == "soundfile"


def test_bad_arrays():
    assert "shape" in _error((16000, np.zeros((2, 16000), dtype=np.float32)))  # (channels, samples) by mistake
    assert "sample rate" in _error((0, np.zeros(16000, dtype=np.float32)))
    assert "NaN" in _error((16000, np.full(100, np.nan, dtype=np.float32)))
    assert "(sample_rate, samples)" in _error((16000,))
    with pytest.raises(InvalidOptionsError):
        load_audio((16000, np.zeros(10)), max_seconds=0)


def test_missing_ffmpeg_says_how_to_get_it(media, monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    for suffix, container in [("webm", "WebM/Matroska"), ("m4a", "MP4/M4A")]:
        message = _error(media[suffix])
        assert f"({container}) needs ffmpeg" in message
        assert "apt-get install ffmpeg" in message and "brew install ffmpeg" in message
        assert "WAV, FLAC, OGG or MP3" in message
    for suffix in ("wav", "flac", "ogg", "mp3"):  # these never need it
        assert load_audio(media[suffix]).decoder == "soundfile"


# -- activity and windows ------------------------------------------------------------------------------------


def test_silence_and_speech(media):
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(SAMPLE_RATE * 5, dtype=np.float32))
    assert speech_fraction(np.zeros(SAMPLE_RATE, dtype=np.float32)) == 0.0
    room = (10 ** (-60 / 20) * rng.standard_normal(SAMPLE_RATE * 5)).astype(np.float32)  # -60 dBFS hiss
    assert is_silent(room) and speech_fraction(room) == 0.0
    tone = (0.1 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    assert speech_fraction(tone) == 1.0 and not is_silent(tone)  # energy, not a speech classifier

    speech = load_audio(media["wav"]).samples
    assert speech_fraction(speech) > 0.5 and not is_silent(speech)
    padded = np.concatenate([np.zeros(len(speech) * 3, dtype=np.float32), speech])
    assert speech_fraction(padded) == pytest.approx(speech_fraction(speech) / 4, abs=0.02)
    assert speech_fraction(np.zeros(10, dtype=np.float32)) == 0.0 and is_silent(np.zeros(0, dtype=np.float32))


def test_iter_windows():
    samples = np.arange(SAMPLE_RATE * 65, dtype=np.float32)
    windows = list(iter_windows(samples, 30.0))
    assert [offset for offset, _ in windows] == [0.0, 30.0, 60.0]
    assert [len(chunk) for _, chunk in windows] == [SAMPLE_RATE * 30, SAMPLE_RATE * 30, SAMPLE_RATE * 5]
    np.testing.assert_array_equal(np.concatenate([chunk for _, chunk in windows]), samples)
    assert list(iter_windows(samples[:0])) == []
    with pytest.raises(InvalidOptionsError):
        list(iter_windows(samples, 0))
