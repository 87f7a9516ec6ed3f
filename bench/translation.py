"""Translation: 64 English sentences (4 to 20 words) into German with a Marian model of opus-mt-en-de's size (random
weights; sentencepiece tokenizers trained on the fixtures' corpus, vocabulary filled up to 58,101), beam search with 4
beams (opus-mt's default) on both sides. Baseline: ``model.generate`` on one sentence at a time. Engine:
``engine.translate`` of the 64 sentences, one per line. Agreement: identical output text.

A random model hardly ever says end-of-sentence, so both sides decode every sentence to ``max_new_tokens`` (given to
both alike): the lengths do not vary as a real model's outputs would.

    .venv/bin/python bench/translation.py [--quick]
"""
from __future__ import annotations

import common
import inputs

MODEL = "bench-marian-en-de"
BEAMS = 4


def prepare(args) -> dict:
    # 10 new tokens (a short sentence's worth): more would take the one-at-a-time baseline past two minutes
    n, new = (8, 8) if args.quick else (64, 10)
    return {"folder": str(inputs.marian(args.quick)), "sentences": inputs.translation_sentences(n),
            "max_new_tokens": new, "beams": BEAMS}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(config["folder"])
        self.model = AutoModelForSeq2SeqLM.from_pretrained(config["folder"]).to(args.device).eval()

    def _one(self, sentence: str) -> str:
        enc = self.tokenizer([sentence], return_tensors="pt").to(self.args.device)
        with self.torch.inference_mode():
            out = self.model.generate(**enc, num_beams=self.config["beams"],
                                      max_new_tokens=self.config["max_new_tokens"])
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()

    def warmup(self):
        self._one(self.config["sentences"][0])

    def run(self):
        return [self._one(s) for s in self.config["sentences"]]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.registry import ModelSpec

        spec = ModelSpec(MODEL, "translation", "marian", f"path:{config['folder']}", languages=("en", "de"))
        self.engine = Engine(common.engine_settings(args), common.path_registry(spec))
        self.engine.served("translation", MODEL)

    def _translate(self, sentences: list[str]) -> list[str]:
        result = self.engine.translate("\n".join(sentences), "en", "de", model=MODEL, num_beams=self.config["beams"],
                                       max_new_tokens=self.config["max_new_tokens"])
        if list(result.source_sentences) != sentences:  # the workload must be the baseline's, sentence for sentence
            raise RuntimeError(f"the engine cut the input into {len(result.source_sentences)} sentences, "
                               f"not {len(sentences)}")
        return list(result.sentences_out)

    def warmup(self):
        self._translate(self.config["sentences"][:16])

    def run(self):
        return self._translate(self.config["sentences"])


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    same = sum(b == e for b, e in zip(base, eng))
    return common.Agreement(same / len(base), f"{same}/{len(base)} translations identical", same == len(base))


BENCH = common.Benchmark(
    task="translation", target=5.0,
    workload=lambda c: f"{len(c['sentences'])} sentences en→de, Marian opus-mt size (random weights), "
                       f"{c['beams']} beams, {c['max_new_tokens']} new tokens each",
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: len(outputs), unit="sentences")

if __name__ == "__main__":
    common.main(BENCH)
