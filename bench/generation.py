"""Text generation: 8 concurrent chat requests, 64 new tokens each, greedy, with the packaged SmolLM2-135M-Instruct
(fp32). Baseline: ``model.generate`` on one request at a time. Engine: 8 threads calling ``engine.generate(...)`` at
once, which its worker decodes as one batch. Agreement: identical greedy tokens. The ratio is of tokens per second.

Also the physical limit: at batch size 1 every weight is read once per token, so the machine's read bandwidth over
the weights' bytes bounds the tokens per second; the engine's batch-1 speed is printed as a fraction of that bound.

    .venv/bin/python bench/generation.py [--quick]
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import common
import inputs

MODEL = "SmolLM2-135M-Instruct"
QUICK_MODEL = "bench-tiny-chat-lm"
NEW_TOKENS = 64
PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in simple words why the sky is blue.",
    "Give me three tips for learning a new language, and say why each one helps.",
    "What are the main differences between a cat and a dog as a pet?",
    "Summarize the story of Little Red Riding Hood in a few sentences.",
    "How do I make a cup of tea? List the steps.",
    "Tell me a fun fact about octopuses and explain it briefly to a ten year old child who likes the ocean.",
)


def prepare(args) -> dict:
    if args.quick:
        import tiny_models

        folder = inputs._cached("tiny-chat-lm", tiny_models.build_causal_lm)
        model, new = QUICK_MODEL, 8
    else:
        from engine.registry import Registry
        from engine.sources import resolve_files

        settings = common.engine_settings(args)
        folder = resolve_files(Registry().get(MODEL), settings)  # the packaged conversion, once
        model, new = MODEL, NEW_TOKENS
    return {"folder": str(folder), "model": model, "prompts": list(PROMPTS), "new_tokens": new,
            "threads": args.threads}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(config["folder"])
        self.model = AutoModelForCausalLM.from_pretrained(config["folder"]).to(args.device).eval()

    def _one(self, prompt: str, new_tokens: int) -> list[int]:
        messages = [{"role": "user", "content": prompt}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.args.device)
        with self.torch.inference_mode():
            out = self.model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0)
        return out[0, ids["input_ids"].shape[1]:].tolist()

    def warmup(self):
        self._one(self.config["prompts"][0], 8)

    def run(self):
        return [self._one(p, self.config["new_tokens"]) for p in self.config["prompts"]]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.registry import ModelSpec

        specs = [ModelSpec(QUICK_MODEL, "text-generation", "causal-lm", f"path:{config['folder']}", chat=True)] \
            if config["model"] == QUICK_MODEL else []
        self.engine = Engine(common.engine_settings(args), common.path_registry(*specs))
        self.served = self.engine.served("text-generation", config["model"])

    def _one(self, prompt: str, new_tokens: int):
        return self.engine.generate(prompt, model=self.config["model"], max_new_tokens=new_tokens, temperature=0,
                                    repetition_penalty=1.0)

    def _concurrent(self, prompts: list[str], new_tokens: int) -> list[list[int]]:
        start = threading.Barrier(len(prompts))

        def request(prompt: str) -> list[int]:
            start.wait()  # every request is sent at the same moment, as concurrent users would
            return [step.token_id for step in self._one(prompt, new_tokens).tokens]

        with ThreadPoolExecutor(len(prompts)) as pool:
            return list(pool.map(request, prompts))

    def warmup(self):
        self._concurrent(self.config["prompts"], 8)

    def run(self):
        return self._concurrent(self.config["prompts"], self.config["new_tokens"])

    def extra(self) -> dict:
        """Batch size 1: one request alone, the median of 3, by wall clock (prefill included) and decoding only."""
        wall, decode, tokens = [], [], 0
        for _ in range(3):
            t0 = time.perf_counter()
            result = self._one(self.config["prompts"][0], self.config["new_tokens"])
            wall.append(time.perf_counter() - t0)
            tokens = len(result.tokens)
            decode.append(result.tokens_per_second)
        weights = self.served.nbytes
        return {"batch1_tokens_per_s": tokens / statistics.median(wall), "batch1_decode_tokens_per_s":
                statistics.median(decode), "weight_bytes": weights, "dtype": str(self.engine.policy.dtype)}


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    same = sum(b == e for b, e in zip(base, eng))
    tokens = sum(len(b) for b in base)
    matching = sum(next((i for i, (x, y) in enumerate(zip(b, e)) if x != y), min(len(b), len(e)))
                   for b, e in zip(base, eng))
    return common.Agreement(same / len(base), f"{same}/{len(base)} requests with identical greedy tokens "
                                              f"({matching}/{tokens} tokens before the first difference)",
                            same == len(base))


def report(reports: dict, config: dict) -> list[str]:
    extra = reports["engine"].extra
    bandwidth = common.measure_read_bandwidth(config["threads"], common.pick_device())
    bound = bandwidth / extra["weight_bytes"]
    b1 = extra["batch1_tokens_per_s"]
    return [f"memory read bandwidth {bandwidth / 1e9:.1f} GB/s ({config['threads']} threads); weights "
            f"{extra['weight_bytes'] / 1e6:.0f} MB ({extra['dtype']}) read once per token at batch 1 -> bound "
            f"{bound:.1f} tokens/s",
            f"engine batch 1: {b1:.1f} tokens/s = {b1 / bound:.0%} of the bound (decoding only: "
            f"{extra['batch1_decode_tokens_per_s']:.1f} tokens/s = {extra['batch1_decode_tokens_per_s'] / bound:.0%}); "
            f"batch of {len(config['prompts'])}: {reports['engine'].per_s:.1f} tokens/s = "
            f"{reports['engine'].per_s / bound:.1f}x the batch-1 bound"]


BENCH = common.Benchmark(
    task="text-generation", target=3.5,
    workload=lambda c: f"{len(c['prompts'])} concurrent chat requests, {c['new_tokens']} new tokens each, greedy, "
                       f"{c['model']}",
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: sum(map(len, outputs)), unit="tokens", report=report)

if __name__ == "__main__":
    common.main(BENCH)
