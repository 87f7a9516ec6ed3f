"""Sentiment: 512 sentences of 5 to 60 words through a DistilBERT-size classifier (random weights, bert-base-uncased
WordPiece tokenizer). Baseline: the transformers model called on one sentence at a time. Engine:
``engine.classify(list_of_512)`` in its default configuration. Agreement: identical labels, and the largest
difference in a label probability.

    .venv/bin/python bench/sentiment.py [--quick] [--engine-env BENCH_INT8=onednn]
"""
from __future__ import annotations

import common
import inputs

MODEL = "bench-distilbert-sst2"


def prepare(args) -> dict:
    n, longest = (16, 30) if args.quick else (512, 60)
    return {"folder": str(inputs.distilbert("sst2", args.quick)), "texts": inputs.sentences(n, 5, longest)}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(config["folder"])
        self.model = AutoModelForSequenceClassification.from_pretrained(config["folder"]).to(args.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def _one(self, text: str) -> list:
        enc = self.tokenizer(text, truncation=True, max_length=512, return_tensors="pt").to(self.args.device)
        with self.torch.inference_mode():
            probs = self.torch.softmax(self.model(**enc).logits[0].float(), -1).cpu()
        best = int(probs.argmax())
        return [self.labels[best], float(probs[best])]

    def warmup(self):
        for text in self.config["texts"][:8]:
            self._one(text)

    def run(self):
        return [self._one(text) for text in self.config["texts"]]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.registry import ModelSpec

        spec = ModelSpec(MODEL, "sentiment", "sequence-classification", f"path:{config['folder']}",
                         labels=("NEGATIVE", "POSITIVE"))
        self.engine = Engine(common.engine_settings(args), common.path_registry(spec))
        # load now (load time is reported apart)
        common.experiment_int8(self.engine.served("sentiment", MODEL))

    def warmup(self):
        self.engine.classify(self.config["texts"][:32], model=MODEL)

    def run(self):
        return [[r.label, r.score] for r in self.engine.classify(self.config["texts"], model=MODEL)]


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    same = sum(b[0] == e[0] for b, e in zip(base, eng))
    # the probability of the baseline's label, from the score of whichever label each side picked (two classes)
    diff = max(abs(b[1] - (e[1] if b[0] == e[0] else 1 - e[1])) for b, e in zip(base, eng))
    counts = {label: sum(b[0] == label for b in base) for label in sorted({b[0] for b in base})}
    return common.Agreement(same / len(base), f"{same}/{len(base)} labels identical (max |Δp| {diff:.1e}; "
                                              f"baseline labels {counts})", same == len(base))


BENCH = common.Benchmark(
    task="sentiment", target=5.0,
    workload=lambda c: f"{len(c['texts'])} sentences of 5-{max(len(t.split()) for t in c['texts'])} words, "
                       "DistilBERT-size classifier (random weights)",
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: len(outputs), unit="sentences")

if __name__ == "__main__":
    common.main(BENCH)
