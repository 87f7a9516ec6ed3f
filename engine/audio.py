"""Decoding uploaded or recorded audio to what speech models expect: 16 kHz mono float32.

Sources are a file path, the raw bytes of a file, or a ``(sample_rate, array)`` tuple as Gradio's microphone
component gives it. WAV, FLAC, OGG (Vorbis, Opus) and MP3 decode through ``soundfile`` (its bundled libsndfile
reads MP3 since 1.1), so they need no system packages. Every other container (WebM, M4A/AAC, ...) goes through
the ``ffmpeg`` command line tool, which must then be installed.

Decoding streams: soundfile input is read in blocks, each block is downmixed to mono float32 and fed to a
streaming ``soxr`` resampler whose output lands in one preallocated array, so a long file never exists as a
multi-channel float64 copy. ffmpeg is asked for 16 kHz mono f32le directly and its pipe is read in blocks.
Limits (``max_bytes``, ``max_seconds``) are checked from the file size and the header before decoding, and the
duration limit again while decoding, for streams whose header does not say how long they are.

Also here: an energy-based activity measure (:func:`speech_fraction`, :func:`is_silent`) used to answer
"no speech found" on silence instead of letting a speech model invent text, and :func:`iter_windows`.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import numpy as np
import soundfile as sf
import soxr

from .errors import InputTooLargeError, InvalidInputError, InvalidOptionsError

logger = logging.getLogger(__name__)

# hard-coded audio parameters
SAMPLE_RATE = 16000  # Hz, what whisper and most speech models expect
BLOCK_SECONDS = 10.0  # seconds of source audio decoded per block; bounds the working memory of a decode
MAX_CHANNELS = 64  # more "channels" than this in an array means it is laid out (channels, samples) by mistake
RESAMPLE_QUALITY = "HQ"  # soxr's high quality preset: flat to 0.9 of Nyquist, far beyond what speech needs
TRUNCATION_TOLERANCE_S = 0.5  # seconds a decode may fall short of the header's length before it counts as damaged
TRUNCATION_TOLERANCE_FRACTION = 0.02  # ... or this fraction of it, for formats whose header only estimates length
DURATION_TOLERANCE_S = 0.5  # seconds a stream may run past max_seconds while decoding (header rounding)
FFPROBE_TIMEOUT_S = 30.0  # seconds; probing reads only the container's header
SNIFF_BYTES = 512  # bytes read from the start of a file to recognise what it is
MP3_HEADER_SEARCH_BYTES = 4096  # bytes after the ID3 tag searched for a Xing/Info/VBRI header (first frame <= 2881)

# energy-based activity detection
ACTIVITY_FRAME_S = 0.030  # seconds per analysis frame (480 samples at 16 kHz)
ACTIVITY_THRESHOLD_DBFS = -45.0  # frame RMS above this counts as sound; quiet rooms sit near -60, speech near -30..-10
MIN_ACTIVE_S = 0.25  # seconds of frames above the threshold needed for audio to count as not silent

SOUNDFILE_FORMATS = "WAV, FLAC, OGG or MP3"
Decoder = Literal["soundfile", "ffmpeg", "array"]
AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, tuple]

_NON_AUDIO_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
)
_CONTAINER_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (  # (offset, magic, name) for the ffmpeg message
    (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (4, b"ftyp", "MP4/M4A"),
    (0, b"#!AMR", "AMR"),
    (0, b"\xff\xf1", "AAC"),
    (0, b"\xff\xf9", "AAC"),
    (0, b"FORM", "AIFF"),
)


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio: ``samples`` is float32, mono, at :data:`SAMPLE_RATE`, shape ``(n,)``.

    ``source_rate`` and ``source_channels`` describe the input (0 when ffprobe is missing and they are unknown);
    ``decoder`` says which path decoded it. Compared by identity: arrays have no single truth value for ``==``.
    """

    samples: np.ndarray
    duration_s: float
    source_rate: int
    source_channels: int
    decoder: Decoder


def load_audio(
    source: AudioSource, *, max_seconds: float | None = None, max_bytes: int | None = None
) -> Audio:
    """Decode ``source`` to 16 kHz mono float32.

    ``source`` is a path, the bytes of an audio file, or ``(sample_rate, array)`` with an integer or float array
    shaped ``(n,)`` or ``(n, channels)``. ``max_bytes`` limits the size of a file or bytes (not of an array);
    ``max_seconds`` limits the duration. Raises :class:`InputTooLargeError` past a limit and
    :class:`InvalidInputError` for anything that is not decodable audio, with a message for the user.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidOptionsError(f"max_seconds must be positive, got {max_seconds}.")
    if max_bytes is not None and max_bytes <= 0:
        raise InvalidOptionsError(f"max_bytes must be positive, got {max_bytes}.")
    if isinstance(source, tuple):
        return _load_array(source, max_seconds)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), max_bytes)
        return _load_encoded(data, data[:SNIFF_BYTES], "", max_seconds)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"Audio file not found: {path.name or path}. Upload the file again.")
        _check_size(path.stat().st_size, max_bytes)
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        return _load_encoded(str(path), head, path.suffix, max_seconds)
    raise InvalidInputError(
        f"Unsupported audio input of type {type(source).__name__}: give a file path, the file's bytes, "
        "or a (sample_rate, array) tuple."
    )


def speech_fraction(
    samples: np.ndarray, *, sample_rate: int = SAMPLE_RATE, threshold_dbfs: float = ACTIVITY_THRESHOLD_DBFS
) -> float:
    """Fraction in [0, 1] of :data:`ACTIVITY_FRAME_S` frames whose RMS level is above ``threshold_dbfs``.

    An energy measure, not a speech classifier: steady noise or music above the threshold counts as activity
    (the speech model's own no-speech probability covers those). Samples are floats in [-1, 1].
    """
    active, total = _active_frames(samples, sample_rate, threshold_dbfs)
    return active / total if total else 0.0


def is_silent(
    samples: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    threshold_dbfs: float = ACTIVITY_THRESHOLD_DBFS,
    min_active_s: float = MIN_ACTIVE_S,
) -> bool:
    """True when fewer than ``min_active_s`` seconds of ``samples`` are louder than ``threshold_dbfs``."""
    active, _ = _active_frames(samples, sample_rate, threshold_dbfs)
    return active * round(ACTIVITY_FRAME_S * sample_rate) / sample_rate < min_active_s


def _active_frames(samples: np.ndarray, sample_rate: int, threshold_dbfs: float) -> tuple[int, int]:
    """(frames above the threshold, all whole frames) for frames of ACTIVITY_FRAME_S seconds."""
    frame = max(1, round(ACTIVITY_FRAME_S * sample_rate))
    total = len(samples) // frame
    if total == 0:
        return 0, 0
    frames = np.asarray(samples[: total * frame], dtype=np.float32).reshape(total, frame)
    mean_square = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame  # (total,)
    threshold = 10.0 ** (threshold_dbfs / 10.0)  # dBFS of RMS -> mean square
    return int(np.count_nonzero(mean_square > threshold)), total


def iter_windows(
    samples: np.ndarray, window_s: float = 30.0, *, sample_rate: int = SAMPLE_RATE
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(offset_s, chunk)`` for consecutive windows of ``window_s`` seconds; chunks are views and the
    last one may be shorter."""
    if not window_s > 0:
        raise InvalidOptionsError(f"window_s must be positive, got {window_s}.")
    step = max(1, round(window_s * sample_rate))
    for start in range(0, len(samples), step):
        yield start / sample_rate, samples[start : start + step]


def format_duration(seconds: float) -> str:
    """``75.5`` -> ``"1 min 15.5 s"``: durations for messages."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)} min {rest:.1f} s" if rest >= 0.05 else f"{int(minutes)} min"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours} h {minutes} min {int(rest)} s"


# ---------------------------------------------------------------------------------------------------------------
# limits


def _format_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


def _check_size(size: int, max_bytes: int | None) -> None:
    if size == 0:
        raise InvalidInputError("The audio file is empty (0 bytes). Record again or upload another file.")
    if max_bytes is not None and size > max_bytes:
        raise InputTooLargeError(
            f"The audio file is {_format_bytes(size)}; the limit is {_format_bytes(max_bytes)}. "
            "Upload a shorter clip or a compressed format such as MP3 or OGG."
        )


def _check_duration(seconds: float, max_seconds: float | None, tolerance_s: float = 0.0) -> None:
    if max_seconds is not None and seconds > max_seconds + tolerance_s:
        raise InputTooLargeError(
            f"The audio is {format_duration(seconds)} long; the limit is {format_duration(max_seconds)}. "
            "Trim it or upload a shorter clip."
        )


def _check_not_empty(frames: int) -> None:
    if frames <= 0:
        raise InvalidInputError(
            "The audio file contains no sound (0 seconds of audio). Record again or upload another file."
        )


def _check_complete(declared_frames: int, decoded_frames: int, rate: int) -> None:
    shortfall = declared_frames - decoded_frames
    if shortfall / rate > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * declared_frames / rate):
        raise InvalidInputError(
            f"The audio file is damaged or cut short: its header says {format_duration(declared_frames / rate)} "
            f"but only {format_duration(decoded_frames / rate)} could be decoded. Export or upload it again."
        )


# ---------------------------------------------------------------------------------------------------------------
# converting blocks to 16 kHz mono float32


class _MonoResampler:
    """Takes blocks shaped ``(n, channels)``, downmixes each to mono float32, resamples it in a stream and
    collects the output in one array preallocated from the expected length (grown by doubling if unknown)."""

    def __init__(self, source_rate: int, expected_frames: int | None) -> None:
        self._stream = None
        if source_rate != SAMPLE_RATE:
            self._stream = soxr.ResampleStream(source_rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        expected = expected_frames * SAMPLE_RATE // source_rate + 16 if expected_frames else SAMPLE_RATE * 60
        self._out = np.empty(expected, dtype=np.float32)
        self._length = 0

    def push(self, block: np.ndarray) -> None:
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)  # (n,)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        self._append(self._stream.resample_chunk(mono) if self._stream is not None else mono)

    def append_resampled(self, mono: np.ndarray) -> None:
        """Append samples that are already mono at :data:`SAMPLE_RATE` (ffmpeg's output)."""
        self._append(mono)

    @property
    def seconds(self) -> float:
        return self._length / SAMPLE_RATE

    def finish(self) -> np.ndarray:
        if self._stream is not None:
            self._append(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        out = self._out[: self._length]
        # a view keeps the whole buffer alive: copy only when that wastes more than an eighth of it
        return out.copy() if len(self._out) - self._length > self._length // 8 else out

    def _append(self, chunk: np.ndarray) -> None:
        end = self._length + len(chunk)
        if end > len(self._out):
            grown = np.empty(max(end, 2 * len(self._out)), dtype=np.float32)
            grown[: self._length] = self._out[: self._length]
            self._out = grown
        self._out[self._length : end] = chunk
        self._length = end


def _to_float32(block: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1); floats pass through as float32."""
    kind = block.dtype.kind
    if kind == "f":
        return block.astype(np.float32, copy=False)
    if kind in "iu":
        full_scale = float(2 ** (8 * block.dtype.itemsize - 1))
        out = block.astype(np.float32)
        if kind == "u":
            out -= full_scale  # unsigned PCM (8-bit WAV) is centred on half the range
        out *= 1.0 / full_scale
        return out
    raise InvalidInputError(f"Audio samples of type {block.dtype} are not supported: use integer or float samples.")


# ---------------------------------------------------------------------------------------------------------------
# arrays: (sample_rate, samples) from a microphone


def _load_array(source: tuple, max_seconds: float | None) -> Audio:
    if len(source) != 2:
        raise InvalidInputError("Audio given as a tuple must be (sample_rate, samples).")
    rate, data = source
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise InvalidInputError(f"The sample rate must be a positive whole number of Hz, got {rate!r}.")
    rate = int(rate)
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] > MAX_CHANNELS:
        raise InvalidInputError(
            f"Audio samples of shape {data.shape} are not supported: give (samples,) or (samples, channels)."
        )
    frames, channels = data.shape
    if frames == 0 or channels == 0:
        raise InvalidInputError("The recording is empty (0 seconds of audio). Record again.")
    _check_duration(frames / rate, max_seconds)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidInputError("The recording contains invalid (NaN or infinite) samples. Record again.")
    resampler = _MonoResampler(rate, frames)
    block_frames = max(1, int(BLOCK_SECONDS * rate))
    for start in range(0, frames, block_frames):
        resampler.push(_to_float32(data[start : start + block_frames]))
    samples = resampler.finish()
    logger.debug("decoded array: %d Hz, %d channel(s), %.2f s", rate, channels, len(samples) / SAMPLE_RATE)
    return Audio(samples, len(samples) / SAMPLE_RATE, rate, channels, "array")


# ---------------------------------------------------------------------------------------------------------------
# encoded files: soundfile first, ffmpeg for the rest


def _load_encoded(source: str | bytes, head: bytes, suffix: str, max_seconds: float | None) -> Audio:
    """Decode a path (``source`` a str) or a file's bytes; ``head`` is the first bytes, ``suffix`` the path's."""
    ffmpeg = shutil.which("ffmpeg")
    try:
        sound = sf.SoundFile(source if isinstance(source, str) else io.BytesIO(source))
    except (sf.LibsndfileError, RuntimeError) as error:
        logger.debug("soundfile cannot open the input (%s); trying ffmpeg", error)
        what = _sniff_non_audio(head)
        if what is not None:
            raise InvalidInputError(
                f"This file is {what}, not audio. Upload an audio file (WAV, FLAC, OGG, MP3, WebM, M4A, ...)."
            ) from None
        if ffmpeg is None:
            raise InvalidInputError(
                f"This audio format ({_container_name(head, suffix)}) needs ffmpeg to decode, and ffmpeg is not "
                "installed. Install it (`apt-get install ffmpeg` or `brew install ffmpeg`) and restart, or upload "
                f"{SOUNDFILE_FORMATS} instead."
            ) from None
    else:
        with sound:
            exact = sound.format != "MP3" or _mp3_has_length_header(source)
            if exact or ffmpeg is None:
                if not exact:
                    logger.warning("MP3 without a Xing/Info header and no ffmpeg: its length is an estimate, "
                                   "a variable bitrate file may be cut short")
                return _decode_soundfile(sound, max_seconds, exact)
        logger.debug("MP3 without a Xing/Info header: decoding with ffmpeg, which reads to the end")
    if isinstance(source, str):
        return _decode_ffmpeg(ffmpeg, source, max_seconds)
    with tempfile.TemporaryDirectory(prefix="llmlab-audio-") as folder:  # ffmpeg needs a seekable file for MP4
        path = os.path.join(folder, "upload" + suffix)
        with open(path, "wb") as fh:
            fh.write(source)
        return _decode_ffmpeg(ffmpeg, path, max_seconds)


def _decode_soundfile(sound: sf.SoundFile, max_seconds: float | None, length_is_exact: bool) -> Audio:
    """Read blockwise; the header's length is trusted for the limit and the completeness check only when exact."""
    rate, channels, declared = sound.samplerate, sound.channels, sound.frames
    _check_not_empty(declared)
    if length_is_exact:
        _check_duration(declared / rate, max_seconds)
    resampler = _MonoResampler(rate, declared)
    block = np.empty((max(1, int(BLOCK_SECONDS * rate)), channels), dtype=np.float32)  # reused for every read
    decoded = 0
    try:
        while True:
            chunk = sound.read(len(block), dtype="float32", always_2d=True, out=block)
            if len(chunk) == 0:
                break
            decoded += len(chunk)
            _check_duration(decoded / rate, max_seconds)
            resampler.push(chunk)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise InvalidInputError(
            f"The audio file is damaged and could not be decoded ({error}). Export or upload it again."
        ) from error
    _check_not_empty(decoded)
    if length_is_exact:
        _check_complete(declared, decoded, rate)
    samples = resampler.finish()
    logger.debug("decoded %s/%s with soundfile: %d Hz, %d channel(s), %.2f s",
                 sound.format, sound.subtype, rate, channels, len(samples) / SAMPLE_RATE)
    return Audio(samples, len(samples) / SAMPLE_RATE, rate, channels, "soundfile")


def _mp3_has_length_header(source: str | bytes) -> bool:
    """Whether the first MP3 frame carries a Xing, Info or VBRI header (LAME, ffmpeg and most encoders write one).

    Without it libsndfile estimates the length from the first frame's bitrate, which is right for a constant
    bitrate and wrong for a variable one, and it stops reading at that estimate.
    """
    def read(offset: int, size: int) -> bytes:
        if isinstance(source, bytes):
            return source[offset : offset + size]
        with open(source, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    offset = 0
    tag = read(0, 10)
    if tag[:3] == b"ID3" and len(tag) == 10:  # skip an ID3v2 tag: its size is 4 bytes of 7 bits each
        offset = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(tag[6:10]))
        offset += 10 if tag[5] & 0x10 else 0  # a footer follows the tag
    first_frames = read(offset, MP3_HEADER_SEARCH_BYTES)
    return any(marker in first_frames for marker in (b"Xing", b"Info", b"VBRI"))


@dataclass(frozen=True)
class _Probe:
    """What ffprobe says about a file's first audio stream; None where it does not say."""

    rate: int | None
    channels: int | None
    duration: float | None  # seconds, when the container states it; browser recordings (MediaRecorder) often don't


def _probe(path: str) -> _Probe | None:
    """ffprobe's view of the first audio stream, or None when ffprobe is not installed. Raises
    InvalidInputError when the file is not media or has no audio stream."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    cmd = [ffprobe, "-v", "warning", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration:format=duration", "-of", "json", path]
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=FFPROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        message = "The audio file could not be read (probing it timed out). Upload another file."
        raise InvalidInputError(message) from error
    if result.returncode != 0:
        detail = _last_line(result.stderr, path)
        raise InvalidInputError(
            f"This file is not audio or it is damaged ({detail}). Upload an audio file such as {SOUNDFILE_FORMATS}."
        )
    info = json.loads(result.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise InvalidInputError("This file contains no audio track. Upload an audio file or a video with sound.")
    stream, container = streams[0], info.get("format") or {}
    duration = _to_float(stream.get("duration")) or _to_float(container.get("duration"))
    if b"Estimating duration from bitrate" in result.stderr:  # raw AAC, MP3 without a header: only a guess
        duration = None
    return _Probe(_to_int(stream.get("sample_rate")), _to_int(stream.get("channels")), duration)


def _decode_ffmpeg(ffmpeg: str, path: str, max_seconds: float | None) -> Audio:
    probe = _probe(path) or _Probe(None, None, None)
    duration = probe.duration
    if duration is not None:
        _check_duration(duration, max_seconds)
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:a:0",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    expected = round(duration * SAMPLE_RATE) if duration else None
    resampler = _MonoResampler(SAMPLE_RATE, expected)
    block_bytes = int(BLOCK_SECONDS * SAMPLE_RATE) * 4
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg cannot block on it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)
        try:
            while chunk := proc.stdout.read(block_bytes):
                usable = len(chunk) - len(chunk) % 4
                resampler.append_resampled(np.frombuffer(chunk[:usable], dtype=np.float32))
                _check_duration(resampler.seconds, max_seconds, DURATION_TOLERANCE_S if duration else 0.0)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            returncode = proc.wait()
        stderr.seek(0)
        detail = _last_line(stderr.read(), path)
    if returncode != 0:
        raise InvalidInputError(f"The audio file could not be decoded ({detail}). Export or upload it again.")
    samples = resampler.finish()
    _check_not_empty(len(samples))
    if duration is not None:
        _check_complete(round(duration * SAMPLE_RATE), len(samples), SAMPLE_RATE)
    logger.debug("decoded with ffmpeg: %.2f s", len(samples) / SAMPLE_RATE)
    return Audio(samples, len(samples) / SAMPLE_RATE, probe.rate or 0, probe.channels or 0, "ffmpeg")


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _sniff_non_audio(head: bytes) -> str | None:
    """Name what a file is when its first bytes show it is clearly not audio (an image, a document, text)."""
    for magic, what in _NON_AUDIO_SIGNATURES:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # may be a multi-byte character cut at SNIFF_BYTES
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    # every audio container has binary header fields (NUL bytes, sizes) within its first bytes
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text):
        return "a text file"
    return None


def _container_name(head: bytes, suffix: str) -> str:
    for offset, magic, name in _CONTAINER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return suffix.lstrip(".").upper() or "unknown"


def _last_line(stderr: bytes, path: str) -> str:
    """ffmpeg's last message, without the (temporary) path it starts with."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return "no details"
    return lines[-1].removeprefix(path).lstrip(": ")[:200] or "no details"


def _to_float(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) and result > 0 else None


def _to_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
