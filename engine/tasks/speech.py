"""Speech to text with Whisper, run by openai-whisper: transcribe, or translate into English, with timestamps.

The task has the same three steps as every other (see :mod:`engine.tasks.embedding`):

1. prepare, on the CPU, in the caller's thread: decode the file to 16 kHz mono float32 (:mod:`engine.audio`, which
   enforces the size and length limits) and cut it into windows of at most 30 seconds. A window ends at the
   quietest point of its last seconds, so that a cut rarely falls inside a word; windows never overlap, so no text
   is repeated at a boundary. Windows without sound are not decoded at all.
2. forward, in the model's worker: several windows at a time through the encoder and the decoder (``whisper.decode``
   takes a batch), with whisper's temperature fallback for windows whose decoding failed (repetitive text, or a
   low average log probability; the hotter decodes draw from a fixed seed, so a file always gives the same text).
   A window whose last segment was cut short goes back in the queue from that point.
   Progress is reported after each batch; a cancelled request stops between batches. On the CPU the decoder runs
   through :mod:`engine.tasks.whisper_step` (its cache written in place, its weights fp32 or int8:
   ``--speech-weights``), and the audio encoder in the encoders' dtype (bf16 on a CPU with bf16 units).
3. postprocess: segments with absolute times, in order, as a frozen :class:`Transcript`.

The whole file is never turned into one mel spectrogram: only the windows of one batch exist as mels at a time, so
memory stays flat however long the recording is (the decoded samples themselves take 64 kB per second).

Silence and music produce no invented text: silent windows (the energy measure of :mod:`engine.audio`) are skipped,
and so are windows the model itself judges to hold no speech (whisper's no-speech probability together with a low
average log probability, as ``whisper.transcribe`` does) and windows whose text fails whisper's quality checks at
every temperature (on music and noise the model babbles repetitive or improbable text). A transcript without
segments says "No speech found".

    >>> t = engine.transcribe("talk.mp3", language="auto")
    >>> t.language, t.language_probs[:2], t.segments[0]
    ('en', (('en', 0.97), ('de', 0.01)), Segment(start=0.0, end=3.2, text='Hello and welcome.'))
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import pickle
import re
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import torch

from ..audio import SAMPLE_RATE, Audio, AudioSource, is_silent, load_audio, speech_fraction
from ..cache import module_nbytes
from ..errors import CancelledError, InvalidOptionsError, ModelLoadError
from ..loading import building
from ..registry import ModelSpec
from ..subtitles import Segment
from ..weights import apply_onednn, packing_available, resolve_speech_weights
from ..worker import Progress, Request
from . import whisper_step
from .common import run_each

if TYPE_CHECKING:
    import whisper

    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "speech-to-text"
WHISPER_TASKS = ("transcribe", "translate")
AUTO = "auto"

# windows
WINDOW_S = 30.0  # seconds: whisper's encoder sees exactly 30 s (shorter windows are zero-padded)
CUT_SEARCH_S = 5.0  # seconds: a window ends in the middle of the longest pause in its last CUT_SEARCH_S seconds
FRAME_S = 0.02  # seconds per energy frame; also whisper's timestamp precision
PAUSE_S = 0.2  # seconds: energy is summed over this long around each frame, so that a pause is more than a gap
MIN_TAIL_S = 0.5  # seconds: a cut-short last segment shorter than this is not decoded again
MIN_PROGRESS_S = 1.0  # seconds: ... nor one whose window ended less than this after the window's start
WINDOW_BATCH = 8  # windows decoded together (encoder and decoder), at most
STEP_MEMORY_BYTES = 1 << 30  # ... and fewer when their decoder caches would pass this (large models on the CPU)

# decoding, as whisper.transcribe decides it
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # tried in turn for a window whose decoding failed
COMPRESSION_RATIO_THRESHOLD = 2.4  # gzip ratio of the text above this: repetitive, decode again hotter
LOGPROB_THRESHOLD = -1.0  # average log probability below this: unsure, decode again hotter
# the hotter decodes sample (whisper draws from torch's global generator): each one draws from this seed, within
# torch.random.fork_rng, so the same audio gives the same transcript whatever ran before it in the process
FALLBACK_SEED = 0
NO_SPEECH_THRESHOLD = 0.6  # no-speech probability above this (and unsure text): the window holds no speech
REPEAT_MIN_WORDS = 6  # _repetitive: texts this long or longer, at most a third of their words distinct
MIN_TOKENS_PER_ACTIVE_S = 1.0  # ... or (and text this sparse for the sound heard: "Thank you." over 20 s of music)
TOP_LANGUAGES = 5  # candidate languages reported

NO_SPEECH = "No speech found"
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue"})  # written without spaces


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    """What to do with the speech. ``language=None`` detects it; ``task="translate"`` translates into English."""

    language: str | None = None
    task: str = "transcribe"


@dataclasses.dataclass(frozen=True)
class Timings:
    """Where the time went, in seconds. ``real_time_factor`` below 1 means faster than the audio plays."""

    decode_audio_s: float  # reading the file and resampling it (caller's thread)
    model_s: float  # the worker: encoder, decoder, postprocessing
    audio_s: float
    windows: int  # windows decoded (including retries of cut-short tails, excluding silent ones)

    @property
    def real_time_factor(self) -> float:
        return self.model_s / self.audio_s if self.audio_s else 0.0


@dataclasses.dataclass(frozen=True)
class Transcript:
    """The result of :func:`transcribe`. ``language_probs`` holds the top candidates, best first; it is empty for
    an English-only model. ``no_speech`` is True when nothing was transcribed; ``message`` then says why."""

    text: str
    language: str  # the code the text was decoded with, e.g. "en"
    language_probs: tuple[tuple[str, float], ...]
    segments: tuple[Segment, ...]
    duration_s: float
    no_speech: bool
    message: str
    model: str
    task: str
    timings: Timings

    @property
    def language_name(self) -> str:
        return language_name(self.language)


@dataclasses.dataclass(frozen=True, eq=False)
class _Job:
    """The worker's payload: decoded audio and checked options."""

    audio: Audio
    options: TranscribeOptions
    decode_audio_s: float


def language_name(code: str) -> str:
    """``"de"`` -> ``"German"``; unknown codes come back unchanged."""
    from whisper.tokenizer import LANGUAGES

    return LANGUAGES.get(code, code).title()


def check_options(spec: ModelSpec, language: str | None, task: str) -> TranscribeOptions:
    """Validate the options for ``spec``: a known task, a known language (code or name; ``None``, ``""`` and
    ``"auto"`` mean detect), and nothing but English transcription for an English-only model."""
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    task = (task or "transcribe").strip().lower()
    if task not in WHISPER_TASKS:
        raise InvalidOptionsError(f"Unknown task {task!r}: choose 'transcribe' (keep the spoken language) or "
                                  "'translate' (into English).")
    code: str | None = None
    if language is not None and language.strip().lower() not in ("", AUTO):
        wanted = language.strip().lower()
        code = wanted if wanted in LANGUAGES else TO_LANGUAGE_CODE.get(wanted)
        if code is None:
            raise InvalidOptionsError(f"Unknown language {language!r}: give a code such as 'en', 'de' or 'fr', a "
                                      "name such as 'German', or 'auto' to detect it.")
    if is_english_only(spec):
        if task == "translate":
            raise InvalidOptionsError(f"{spec.name} is an English-only model: it cannot translate. Pick a "
                                      "multilingual model such as whisper-base to translate into English.")
        if code not in (None, "en"):
            raise InvalidOptionsError(f"{spec.name} is an English-only model: it cannot transcribe "
                                      f"{language_name(code)}. Pick a multilingual model such as whisper-base.")
    return TranscribeOptions(code, task)


def is_english_only(spec: ModelSpec) -> bool:
    """What the registry says before loading: an ``.en`` model, or one whose only language is English."""
    return spec.languages == ("en",) or spec.name.endswith(".en")


def plan_windows(samples: np.ndarray, *, window_s: float = WINDOW_S, search_s: float = CUT_SEARCH_S,
                 sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Cut ``samples`` into consecutive ``(start, end)`` sample ranges of at most ``window_s`` seconds, each
    ending in the middle of the longest quiet stretch of its last ``search_s`` seconds (the last one at the end):
    a cut in the middle of a pause leaves the speech on both sides whole, and whisper writes a sentence that ends
    right at a window's end less reliably."""
    frame = round(FRAME_S * sample_rate)
    n_frames = len(samples) // frame
    energy = np.einsum("ij,ij->i", samples[: n_frames * frame].reshape(n_frames, frame),
                       samples[: n_frames * frame].reshape(n_frames, frame), dtype=np.float64)  # (n_frames,)
    pause = max(1, round(PAUSE_S / FRAME_S))
    smooth = np.convolve(energy, np.ones(pause), mode="same") if n_frames else energy
    window, search = round(window_s * sample_rate), round(search_s * sample_rate)
    windows, start = [], 0
    while len(samples) - start > window:
        lo, hi = (start + window - search) // frame + 1, (start + window) // frame  # whole frames inside the window
        cut = (lo + _middle_of_longest_quiet(smooth[lo:hi])) * frame if hi > lo else start + window
        windows.append((start, cut))
        start = cut
    windows.append((start, len(samples)))
    return windows


def _middle_of_longest_quiet(energy: np.ndarray) -> int:
    """The index in the middle of the longest run of frames within a factor 2 of the quietest (all of them exactly
    silent, in digital silence)."""
    quiet = np.concatenate([[False], energy <= 2 * energy.min() + 1e-12, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))  # run starts and ends, alternating
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int((starts[longest] + ends[longest] - 1) // 2)


class WhisperModel:
    """A loaded openai-whisper model serving transcription requests, one request at a time, its windows in
    batches of up to :data:`WINDOW_BATCH`."""

    def __init__(self, spec: ModelSpec, checkpoint: Path, device: str, dtype: torch.dtype,
                 encoder_dtype: torch.dtype | None = None, weights: str = "fp32") -> None:
        import whisper

        self.spec, self.device = spec, device
        with building():
            self.model: "whisper.Whisper" = whisper.load_model(str(checkpoint), device=device).eval()
        # openai-whisper runs in fp16 on a GPU (its layers cast weights to the input's dtype); on the CPU fp32, with
        # the audio encoder in the encoders' dtype (bf16 on a CPU with bf16 units) and the decoder's per-token
        # products in ``weights`` (fp32 or int8, see engine.weights.resolve_speech_weights)
        self.fp16 = not device.startswith("cpu") and dtype != torch.float32
        self.encoder_dtype = torch.float16 if self.fp16 else torch.float32
        self.weights = "fp16" if self.fp16 else "fp32"
        if device.startswith("cpu"):
            if encoder_dtype in (torch.bfloat16, torch.float16):
                for module in self.model.encoder.modules():  # whisper's LayerNorm computes in fp32 by itself
                    if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                        module.to(encoder_dtype)
                self.encoder_dtype = encoder_dtype
            apply_onednn(self.model, (torch.nn.Linear, whisper.model.Linear))  # fp32 layers: oneDNN's products
            if weights == "int8":
                whisper_step.quantize_decoder(self.model.decoder)
                self.weights = "int8"
            # fp32 decoder weights packed once for oneDNN where torch can (whisper_step._pack)
            whisper_step.install(self.model.decoder, self.encoder_dtype,
                                 pack=weights != "int8" and packing_available())
        self.english_only = not self.model.is_multilingual
        dims, item = self.model.dims, 2 if self.fp16 else 4
        # the decoder caches keys and values of the 1500 encoder frames in every layer, for every window (and, on the
        # CPU, of the whole text context: whisper_step's buffers)
        frames = dims.n_audio_ctx + (dims.n_text_ctx if device.startswith("cpu") else 0)
        per_window = frames * dims.n_text_state * 2 * dims.n_text_layer * item
        self.window_batch = max(1, min(WINDOW_BATCH, STEP_MEMORY_BYTES // per_window))
        # encoder and decoder hold every weight; the model's own sparse alignment_heads buffer has no data pointer
        self.nbytes = module_nbytes(self.model.encoder, self.model.decoder)
        from whisper.tokenizer import get_tokenizer

        self.tokenizer = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages)

    def batch_key(self, payload: _Job) -> Hashable:
        return None

    def run_batch(self, requests: list[Request]) -> None:
        run_each(requests, self._transcribe)

    # --- one request --------------------------------------------------------------------------------------
    def _transcribe(self, request: Request) -> Transcript:
        job: _Job = request.payload
        t0 = time.perf_counter()
        samples, duration = job.audio.samples, job.audio.duration_s
        options = self._check(job.options)

        def result(segments: list[Segment], language: str, probs: tuple, windows: int, message: str = "") -> Transcript:
            segments = sorted(segments, key=lambda s: s.start)
            text = ("" if language in NO_SPACE_LANGUAGES else " ").join(s.text for s in segments)
            no_speech = not segments
            timings = Timings(job.decode_audio_s, time.perf_counter() - t0, duration, windows)
            return Transcript(text, language, probs, tuple(segments), duration, no_speech,
                              message if no_speech else "", self.spec.name, options.task, timings)

        if is_silent(samples):
            request.report(1.0, NO_SPEECH)
            return result([], options.language or "en", (), 0, f"{NO_SPEECH}: the recording is silent.")

        pending = collections.deque(w for w in plan_windows(samples) if not is_silent(samples[w[0]:w[1]]))
        total = len(samples)
        done = total - sum(end - start for start, end in pending)  # silent windows count as done
        language, probs = options.language, ()
        segments: list[Segment] = []
        windows = 0
        while pending:
            if request.cancelled:
                raise CancelledError("Transcription cancelled.")
            batch = [pending.popleft() for _ in range(min(self.window_batch, len(pending)))]
            request.report(done / total, f"Transcribing {_clock(batch[0][0])}–{_clock(batch[-1][1])} of "
                                         f"{_clock(total)}")
            features = self._encode([samples[start:end] for start, end in batch])  # (n, 1500, d_model)
            if not probs and not self.english_only:
                probs = self._detect_language(features)
                language = language or probs[0][0]
            active_s = [speech_fraction(samples[start:end]) * (end - start) / SAMPLE_RATE for start, end in batch]
            decoded = self._decode(features, dataclasses.replace(options, language=language or "en"), active_s)
            windows += len(batch)
            for (start, end), tokens in zip(batch, decoded):
                if tokens is None:  # no speech in this window
                    done += end - start
                    continue
                found, tail = self._segments(tokens, start, end)
                segments.extend(found)
                if tail is not None and _worth_again(start, tail.start_sample, end):
                    pending.append((tail.start_sample, end))  # its last segment was cut short: decode it again
                    done += tail.start_sample - start
                else:
                    segments.extend([tail.segment] if tail is not None and tail.segment.text else [])
                    done += end - start
            request.report(done / total, f"Transcribed {_clock(done)} of {_clock(total)}")
        message = (f"{NO_SPEECH}: the audio has sound, but the model heard no speech in it that it could make out "
                   "(music or noise?).")
        return result(segments, language or "en", probs, windows, message)

    def _check(self, options: TranscribeOptions) -> TranscribeOptions:
        """What only the loaded model can tell: English-only, and the languages this checkpoint knows."""
        if self.english_only:
            if options.task == "translate" or options.language not in (None, "en"):
                raise InvalidOptionsError(f"{self.spec.name} is an English-only model: it can only transcribe "
                                          "English. Pick a multilingual model such as whisper-base.")
            return dataclasses.replace(options, language="en")
        if options.language is not None and options.language not in self.tokenizer.all_language_codes:
            raise InvalidOptionsError(f"{self.spec.name} does not know {language_name(options.language)}; "
                                      "pick another language or 'auto'.")
        return options

    # --- the device steps ---------------------------------------------------------------------------------
    def _encode(self, chunks: Sequence[np.ndarray]) -> torch.Tensor:
        import whisper

        n_mels = self.model.dims.n_mels
        # one mel per window, each zero-padded to 30 s as whisper's encoder expects: (n, n_mels, 3000)
        mel = torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(np.array(c, np.float32)), n_mels)
                           for c in chunks]).to(self.device)
        with torch.inference_mode():  # whisper.decode takes fp32 features unless it runs in fp16
            features = self.model.embed_audio(mel.to(self.encoder_dtype))
            return features if self.fp16 else features.float()

    def _detect_language(self, features: torch.Tensor) -> tuple[tuple[str, float], ...]:
        """Language probabilities averaged over the windows of the first batch, top candidates first."""
        with torch.inference_mode():
            _, per_window = self.model.detect_language(features)  # one {code: probability} per window
        codes = per_window[0].keys()
        mean = {c: float(np.mean([p[c] for p in per_window])) for c in codes}
        top = sorted(mean.items(), key=lambda kv: kv[1], reverse=True)[:TOP_LANGUAGES]
        return tuple((code, round(p, 4)) for code, p in top)

    def _decode(self, features: torch.Tensor, options: TranscribeOptions,
                active_s: Sequence[float]) -> list[list[int] | None]:
        """Tokens per window, retrying failed windows at higher temperatures as ``whisper.transcribe`` does, but
        all the windows of a batch in one ``whisper.decode`` call. None for a window without speech (see
        :func:`_no_speech`; ``active_s`` is each window's seconds of sound), or whose text failed at every
        temperature, which is what music and noise give (whisper.transcribe keeps the last, hottest, text)."""
        import whisper

        results: list = [None] * features.shape[0]
        todo = list(range(features.shape[0]))
        for temperature in TEMPERATURES:
            decoding = whisper.DecodingOptions(task=options.task, language=options.language, fp16=self.fp16,
                                               temperature=temperature)
            with torch.inference_mode(), _seeded(temperature, self.device):
                out = whisper.decode(self.model, features[todo], decoding)
            retry = []
            for i, r in zip(todo, out):
                if _no_speech(r, active_s[i]):
                    continue  # results[i] stays None
                results[i] = r.tokens if not _failed(r) else None
                if _failed(r):
                    retry.append(i)
            todo = retry
            if not todo:
                break
        return results

    def _segments(self, tokens: list[int], start: int, end: int) -> tuple[list[Segment], "_Tail | None"]:
        """One window's tokens as segments with absolute times, and its last segment apart when the model cut it
        short (it began a segment that the window ended before it could close)."""
        tk = self.tokenizer
        is_time = [t >= tk.timestamp_begin for t in tokens]
        # <|t1|> text <|t2|><|t2|> text <|t3|>: a new segment begins after each pair of timestamps
        pairs = [i + 1 for i in range(len(tokens) - 1) if is_time[i] and is_time[i + 1]]
        closed = len(tokens) >= 2 and is_time[-1] and not is_time[-2]  # ends <|t|> alone: the last segment is whole
        bounds = [0] + pairs + ([len(tokens)] if closed or not pairs else [])
        pieces = [tokens[a:b] for a, b in zip(bounds, bounds[1:])]
        found = [s for s in (self._segment(p, start, end) for p in pieces) if s is not None]
        if closed or not pairs:
            return found, None
        tail_start = start + round((tokens[pairs[-1] - 1] - tk.timestamp_begin) * FRAME_S * SAMPLE_RATE)
        tail = self._segment(tokens[pairs[-1]:], start, end)
        return found, _Tail(min(tail_start, end), tail or Segment(tail_start / SAMPLE_RATE, end / SAMPLE_RATE, ""))

    def _segment(self, piece: list[int], start: int, end: int) -> Segment | None:
        """``<|t1|> text <|t2|>`` as a Segment with absolute times (clamped to the window), None without text."""
        tk = self.tokenizer
        offset, limit = start / SAMPLE_RATE, end / SAMPLE_RATE
        times = [offset + (t - tk.timestamp_begin) * FRAME_S for t in piece if t >= tk.timestamp_begin]
        text = tk.decode([t for t in piece if t < tk.eot]).strip()
        if not text:
            return None
        seg_end = min(times[-1] if len(times) > 1 else limit, limit)
        seg_start = min(times[0] if times else offset, seg_end)
        return Segment(round(seg_start, 3), round(seg_end, 3), text)


@dataclasses.dataclass(frozen=True)
class _Tail:
    """The last segment of a window, cut short: where it starts (in samples), and what was decoded of it."""

    start_sample: int
    segment: Segment


def _worth_again(start: int, tail_start: int, end: int) -> bool:
    """Decode a cut-short tail again only when the window made progress and the tail is long enough to matter:
    this bounds the retries of a window (whisper.transcribe moves on the same way, but without a bound)."""
    return tail_start - start >= MIN_PROGRESS_S * SAMPLE_RATE and end - tail_start >= MIN_TAIL_S * SAMPLE_RATE


def _clock(sample: int) -> str:
    """A position in the audio as m:ss (h:mm:ss past an hour)."""
    minutes, seconds = divmod(round(sample / SAMPLE_RATE), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


@contextlib.contextmanager
def _seeded(temperature: float, device: str):
    """For a sampled decode (``temperature`` > 0) on ``device``: torch's global generator seeded with
    :data:`FALLBACK_SEED` for its duration, and restored after (``torch.random.fork_rng``), so that the draws depend
    on the audio alone, not on the requests before. Greedy decodes draw nothing and are left alone."""
    if temperature == 0:
        yield
        return
    with torch.random.fork_rng(devices=[torch.device(device).index or 0] if device.startswith("cuda") else []):
        torch.manual_seed(FALLBACK_SEED)
        yield


def _failed(r: "whisper.DecodingResult") -> bool:
    return (r.compression_ratio > COMPRESSION_RATIO_THRESHOLD or r.avg_logprob < LOGPROB_THRESHOLD
            or _repetitive(r.text))


def _repetitive(text: str) -> bool:
    """A short text that says one or two words over and over ("A A A A A A A", "nu vădă, nu vădă, ..."): whisper's
    compression ratio cannot see repetition in a text this short (gzip's own overhead dominates: seven "\u200bA"
    compress to 2.1, under its 2.4), so such a text counts as repetitive when at least :data:`REPEAT_MIN_WORDS` words
    are at most a third distinct."""
    words = re.findall(r"\w+", text.lower())
    return len(words) >= REPEAT_MIN_WORDS and len(set(words)) * 3 <= len(words)


def _no_speech(r: "whisper.DecodingResult", active_s: float) -> bool:
    """The model doubts there is speech (its no-speech probability is high) and its text does not convince:
    unsure (whisper's own rule), or far too short for the seconds of sound it heard, the "Thank you." that Whisper
    writes over music. Speech runs at 3 to 5 tokens a second."""
    if r.no_speech_prob <= NO_SPEECH_THRESHOLD:
        return False
    return r.avg_logprob < LOGPROB_THRESHOLD or len(r.tokens) < MIN_TOKENS_PER_ACTIVE_S * active_s


def _checkpoint(files: Path, spec: ModelSpec) -> Path:
    """The ``.pt`` file itself, or the one ``.pt`` file in a folder."""
    if files.is_file():
        return files
    found = sorted(files.glob("*.pt"))
    if len(found) == 1:
        return found[0]
    what = "no" if not found else f"{len(found)}"
    hint = (" It looks like a Hugging Face Transformers model; this tab runs openai-whisper checkpoints."
            if (files / "config.json").is_file() else "")
    raise ModelLoadError(f"Model {spec.name!r}: {files} holds {what} openai-whisper checkpoint (.pt) files; "
                         f"it needs exactly one.{hint}")


def decoder_weights(engine: "Engine") -> tuple[str, str]:
    """The decoder weights whisper models load with on this engine's device, and why
    (:func:`engine.weights.resolve_speech_weights` of its settings)."""
    return resolve_speech_weights(engine.settings.speech_weights, engine.policy.device.split(":")[0],
                                  engine.settings.dtype)


def load(spec: ModelSpec, files: Path, engine: "Engine") -> WhisperModel:
    checkpoint = _checkpoint(files, spec)
    policy, (weights, _) = engine.policy, decoder_weights(engine)
    try:
        return WhisperModel(spec, checkpoint, policy.device, policy.dtype, policy.encoder_dtype, weights)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, TypeError) as e:  # not a checkpoint at all
        raise ModelLoadError(f"Model {spec.name!r}: {checkpoint} is not a valid openai-whisper checkpoint ({e}). "
                             "Convert or download it again.") from e


def submit(engine: "Engine", audio: AudioSource | Audio, model: str | None = None, *, language: str | None = None,
           task: str = "transcribe", progress: Progress | None = None) -> Request:
    """Check the options, decode the audio and queue it for the model; returns the :class:`Request` (for a UI
    that relays progress or cancels). :func:`transcribe` waits for its result."""
    spec = engine.spec(TASK, model)
    options = check_options(spec, language, task)
    t0 = time.perf_counter()
    decoded = audio if isinstance(audio, Audio) else load_audio(
        audio, max_seconds=engine.settings.max_audio_seconds, max_bytes=engine.settings.max_upload_bytes)
    return engine.submit(TASK, spec.name, _Job(decoded, options, time.perf_counter() - t0), progress)


def transcribe(engine: "Engine", audio: AudioSource | Audio, model: str | None = None, *,
               language: str | None = None, task: str = "transcribe", progress: Progress | None = None) -> Transcript:
    """Transcribe speech (or translate it into English): ``engine.transcribe("talk.mp3", language="auto")``.

    ``audio`` is a path, the bytes of a file, a ``(sample_rate, samples)`` tuple, or a decoded
    :class:`~engine.audio.Audio`; any format :func:`engine.audio.load_audio` reads, within the configured size and
    length limits. ``language`` is ``None``/``"auto"`` (detect) or a code or name; ``task`` is ``"transcribe"`` or
    ``"translate"``. ``progress(fraction, message)`` is called after each batch of 30-second windows.
    Raises :class:`~engine.errors.InvalidInputError` (with a message for the user) for audio it cannot use.
    """
    return submit(engine, audio, model, language=language, task=task, progress=progress).result()
