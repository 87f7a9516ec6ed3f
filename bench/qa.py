"""Question answering: 100 (question, context) pairs, contexts of 60 to 200 words as SQuAD paragraphs are (one
384-token window each), through a DistilBERT-size extractive QA model (random weights, bert-base-uncased WordPiece
tokenizer). Baseline: the transformers model on one pair at a time, then the best span (``start <= end < start + 30``
tokens, the largest start + end logit, which is the largest ``p_start * p_end``). Engine:
``engine.answer_batch(pairs)``. Agreement: identical character spans.

    .venv/bin/python bench/qa.py [--quick] [--engine-env BENCH_INT8=onednn]
"""
from __future__ import annotations

import common
import inputs

MODEL = "bench-distilbert-qa"
MAX_ANSWER_TOKENS = 30  # the engine's default


def prepare(args) -> dict:
    n = 8 if args.quick else 100
    return {"folder": str(inputs.distilbert("qa", args.quick)), "pairs": inputs.qa_pairs(n)}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        import numpy as np
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.np, self.torch = np, torch
        self.tokenizer = AutoTokenizer.from_pretrained(config["folder"])
        self.model = AutoModelForQuestionAnswering.from_pretrained(config["folder"]).to(args.device).eval()

    def _one(self, question: str, context: str) -> list:
        np = self.np
        enc = self.tokenizer(question, context, truncation="only_second", max_length=384,
                             return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        in_context = np.array([s == 1 for s in enc.sequence_ids(0)])
        with self.torch.inference_mode():
            out = self.model(**enc.to(self.args.device))
        start = out.start_logits[0].float().cpu().numpy()
        end = out.end_logits[0].float().cpu().numpy()
        idx = np.flatnonzero(in_context)
        scores = start[idx][:, None] + end[idx][None, :]  # (start, end) over context tokens
        gap = idx[None, :] - idx[:, None]
        scores[(gap < 0) | (gap >= MAX_ANSWER_TOKENS)] = -np.inf
        s, e = divmod(int(scores.argmax()), len(idx))
        return [offsets[idx[s]][0], offsets[idx[e]][1]]

    def warmup(self):
        for q, c in self.config["pairs"][:4]:
            self._one(q, c)

    def run(self):
        return [self._one(q, c) for q, c in self.config["pairs"]]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.registry import ModelSpec

        spec = ModelSpec(MODEL, "question-answering", "extractive-qa", f"path:{config['folder']}")
        self.engine = Engine(common.engine_settings(args), common.path_registry(spec))
        common.experiment_int8(self.engine.served("question-answering", MODEL))
        self.pairs = [tuple(p) for p in config["pairs"]]

    def warmup(self):
        self.engine.answer_batch(self.pairs[:16], model=MODEL)

    def run(self):
        return [[a.start, a.end] for a in self.engine.answer_batch(self.pairs, model=MODEL)]


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    same = sum(list(b) == list(e) for b, e in zip(base, eng))
    return common.Agreement(same / len(base), f"{same}/{len(base)} answer spans identical", same == len(base))


BENCH = common.Benchmark(
    task="question-answering", target=4.0,
    workload=lambda config: f"{len(config['pairs'])} question/context pairs (contexts of 60-200 words), "
                            "DistilBERT-size QA model (random weights)",
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: len(outputs), unit="pairs")

if __name__ == "__main__":
    common.main(BENCH)
