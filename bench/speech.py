"""Speech to text: about 80 s of English speech (espeak-ng) with the packaged Whisper base, greedy (with whisper's
usual temperature fallback), language English on both sides. Baseline: openai-whisper's ``whisper.transcribe()``.
Engine: ``engine.transcribe(...)``. Both get the decoded audio (decoding the file is not timed). Agreement: the word
error rate of each against the text that was spoken, within one point of each other.

    .venv/bin/python bench/speech.py [--quick]
"""
from __future__ import annotations

import common
import inputs

MODEL = "whisper-base"
SAMPLE_RATE = 16_000


def prepare(args) -> dict:
    # --quick: the same model on one sentence (a random tiny Whisper babbles until its token limit, far slower)
    from engine.registry import Registry
    from engine.sources import resolve_files

    audio, text = inputs.speech(args.quick)
    checkpoint = resolve_files(Registry().get(MODEL), common.engine_settings(args))  # the packaged conversion, once
    return {"audio": str(audio), "text": text, "checkpoint": str(checkpoint), "model": MODEL}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        import whisper

        self.whisper = whisper
        self.model = whisper.load_model(config["checkpoint"], device=args.device)
        self.samples = whisper.load_audio(config["audio"])

    def _transcribe(self, samples) -> str:
        fp16 = self.args.device.startswith("cuda")  # whisper's own default: fp16 on a GPU, fp32 on the CPU
        return self.whisper.transcribe(self.model, samples, language="en", fp16=fp16)["text"].strip()

    def warmup(self):
        self._transcribe(self.samples[:5 * SAMPLE_RATE])

    def run(self):
        return [self._transcribe(self.samples), len(self.samples) / SAMPLE_RATE]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.audio import load_audio

        self.engine = Engine(common.engine_settings(args))
        self.engine.served("speech-to-text", config["model"])
        self.audio = load_audio(config["audio"])

    def _transcribe(self, audio) -> str:
        return self.engine.transcribe(audio, model=self.config["model"], language="en").text.strip()

    def warmup(self):
        self._transcribe((SAMPLE_RATE, self.audio.samples[:5 * SAMPLE_RATE]))

    def run(self):
        return [self._transcribe(self.audio), self.audio.duration_s]


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
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: outputs[1], unit="audio-s")

if __name__ == "__main__":
    common.main(BENCH)
