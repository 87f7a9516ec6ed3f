"""Text generation: 8 concurrent chat requests, 64 new tokens each, greedy, with the packaged SmolLM2-135M-Instruct
(fp32). Baseline: ``model.generate`` on one request at a time. Engine: 8 threads calling ``engine.generate(...)`` at
once, which its worker decodes as one batch. Agreement: identical greedy tokens. The ratio is of tokens per second.

Also the physical limit: at batch size 1 every weight is read once per token, so the machine's read bandwidth over
the weights' bytes bounds the tokens per second; the engine's batch-1 speed is printed as a fraction of that bound.

Peer: llama.cpp's ``llama-server`` (built by scripts/setup-llama-server.sh into .cache/llama-server; this script
never builds it, and leaves the peer out with a note when it is not there) on the packaged SmolLM2 GGUF itself
(Q4_1), in its own process, with 8 parallel slots: the same 8 requests at once, and batch 1 (one request alone,
decoding tokens/s from the server's own timings), each with the bytes it reads per token against the bandwidth.
The engine's batch 1 is also measured with bf16 weights (``LLM_LAB_WEIGHTS=bf16``), int8 and int4, and with the
step compiled (``LLM_LAB_COMPILE``) at fp32, int8 and int4, each beside llama.cpp's file of the same precision (F32,
BF16 and Q8_0 made from the packaged Q4_1 by llama-quantize). The 8 concurrent requests are measured at every
precision on both sides too: the engine with fp32, bf16, int8 and int4 weights (and fp32, int8 and int4 with the
step compiled) beside llama-server's 8 slots on F32, BF16, Q8_0 and Q4_1.

    .venv/bin/python bench/generation.py [--quick]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import urllib.request
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

BATCH1_PROMPT = PROMPTS[1]  # batch 1 on both sides: a prompt SmolLM2 answers at length (64 new tokens)

LLAMA_HOME = common.ROOT / ".cache" / "llama-server"
LLAMA_BIN = LLAMA_HOME / "bin" / "llama-server"
LLAMA_QUANTIZE = LLAMA_HOME / "bin" / "llama-quantize"
LLAMA_READY = LLAMA_BIN.is_file() and any(LLAMA_HOME.glob(".built-*"))
# the same weights re-encoded by llama-quantize, for batch 1 at each precision beside the engine's (engine weights:
# llama.cpp file type); made once into GGUF_DIR. F32 holds the Q4_1 values in float32: the same bytes as fp32 weights.
LLAMA_TYPES = {"fp32": "F32", "bf16": "BF16", "int8": "Q8_0", "int4": "Q4_1"}
GGUF_DIR = common.ROOT / ".cache" / "bench" / "gguf"
LLAMA_SLOTS = 8
ENGINE_WEIGHTS = ("bf16", "int8", "int4")  # the engine's batch 1 at these weights too (engine.weights), in extra()
# ... and each setting again with the step compiled in max-autotune (LLM_LAB_COMPILE: torch.compile at load, its time
# reported; inductor's C++ products timed against ATen's on the device: on the EPYC of bench/README.md, int8 products
# at batch 1 2.6x torch's int8 kernel, int4 1.2x, and the whole fp32 step 2.2x the eager one)
ENGINE_COMPILED = {"fp32": "max-autotune", "int8": "max-autotune", "int4": "max-autotune"}


def gguf_path() -> str:
    from engine import packaged

    source = packaged._source("smollm2-135m-instruct")
    return str(packaged._inputs(source, packaged._package_dirs(source))[0])


def llama_variants(q4_1: str) -> dict[str, str]:
    """The packaged Q4_1 GGUF and its F32, BF16 and Q8_0 re-encodings (made with llama-quantize when missing; left
    out, with a note, when llama-quantize is not built)."""
    files = {"Q4_1": q4_1}
    if not LLAMA_QUANTIZE.is_file():
        print(f"[bench] generation: llama.cpp F32, BF16 and Q8_0 left out: {LLAMA_QUANTIZE} is not built (run "
              "scripts/setup-llama-server.sh)", file=sys.stderr)
        return files
    GGUF_DIR.mkdir(parents=True, exist_ok=True)
    for kind in ("F32", "BF16", "Q8_0"):
        target = GGUF_DIR / f"SmolLM2-135M-Instruct.{kind}.gguf"
        if not target.is_file():
            partial = target.with_suffix(".partial")
            subprocess.run([str(LLAMA_QUANTIZE), "--allow-requantize", q4_1, str(partial), kind], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            partial.rename(target)
        files[kind] = str(target)
    return files


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
    llama = LLAMA_READY and not args.quick  # --quick: the side starts no server and does nothing
    if not LLAMA_READY:
        print(f"[bench] generation: llama.cpp peer left out: {LLAMA_BIN} is not built (run "
              "scripts/setup-llama-server.sh)", file=sys.stderr)
    gguf = gguf_path() if llama else None
    return {"folder": str(folder), "model": model, "prompts": list(PROMPTS), "new_tokens": new,
            "threads": args.threads, "gguf": gguf, "gguf_variants": llama_variants(gguf) if gguf else {}}


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

    def _one(self, prompt: str, new_tokens: int, engine=None):
        return (engine or self.engine).generate(prompt, model=self.config["model"], max_new_tokens=new_tokens,
                                                temperature=0, repetition_penalty=1.0)

    def _concurrent(self, prompts: list[str], new_tokens: int, engine=None) -> list[list[int]]:
        start = threading.Barrier(len(prompts))

        def request(prompt: str) -> list[int]:
            start.wait()  # every request is sent at the same moment, as concurrent users would
            return [step.token_id for step in self._one(prompt, new_tokens, engine).tokens]

        with ThreadPoolExecutor(len(prompts)) as pool:
            return list(pool.map(request, prompts))

    def warmup(self):
        self._concurrent(self.config["prompts"], 8)

    def run(self):
        return self._concurrent(self.config["prompts"], self.config["new_tokens"])

    def _batch1(self, engine) -> tuple[float, float, list[int]]:
        """Batch size 1: one request alone, the median of 3: (tokens/s by wall clock with prefill, decoding only:
        from the first token to the last, as llama.cpp's own timings count; and the greedy tokens). The prompt is
        one the model answers at length (a short answer would measure mostly the prefill)."""
        wall, decode, ids = [], [], []
        for _ in range(3):
            t0 = time.perf_counter()
            stamps, ids = [], []
            with engine.stream(BATCH1_PROMPT, model=self.config["model"], max_new_tokens=self.config["new_tokens"],
                               temperature=0, repetition_penalty=1.0) as steps:
                for step in steps:
                    stamps.append(time.perf_counter())
                    ids.append(step.token_id)
            wall.append(time.perf_counter() - t0)
            decode.append((len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0)
        return len(ids) / statistics.median(wall), statistics.median(decode), ids

    def extra(self) -> dict:
        b1, b1_decode, b1_ids = self._batch1(self.engine)
        out = {"batch1_tokens_per_s": b1, "batch1_decode_tokens_per_s": b1_decode,
               "weight_bytes": getattr(self.served, "bytes_per_token", self.served.nbytes),
               "dtype": str(self.engine.policy.dtype), "weights": getattr(self.served, "weights", "fp32")}
        if self.config["model"] == MODEL and self.args.device == "cpu":  # the same batch 1 with reduced-precision weights
            from engine import Engine

            self.engine.close()
            runs = [(w, False) for w in ENGINE_WEIGHTS] + list(ENGINE_COMPILED.items())
            for weights, compiled in runs:
                engine = Engine(common.engine_settings(self.args, weights=weights, compile=compiled))
                t0 = time.perf_counter()
                served = engine.served("text-generation", self.config["model"])
                load_s = time.perf_counter() - t0
                engine.generate(BATCH1_PROMPT, model=self.config["model"], max_new_tokens=8,
                                temperature=0)  # warm-up
                rate, decode, ids = self._batch1(engine)
                out[f"batch1_{weights}{'+compile' if compiled else ''}"] = {
                    "tokens_per_s": rate, "decode_tokens_per_s": decode, "bytes_per_token": served.bytes_per_token,
                    # greedy tokens the same as the side's own (fp32, eager) batch 1, position by position
                    "same_tokens": sum(a == b for a, b in zip(ids, b1_ids)), "tokens": len(b1_ids),
                    "compile_s": served.compile_seconds, "load_s": load_s,
                    "compile_mode": (compiled if isinstance(compiled, str) else "default") if compiled else None}
                out[f"concurrent_{weights}{'+compile' if compiled else ''}"] = self._concurrent_rate(engine)
                engine.close()
        return out

    def _concurrent_rate(self, engine) -> float:
        """The 8 concurrent requests through ``engine`` (another weights setting), by :func:`concurrent_rate`."""
        prompts = self.config["prompts"]
        return concurrent_rate(lambda new: self._concurrent(prompts, new, engine), self.config["new_tokens"])


def concurrent_rate(run, new_tokens: int, rounds: int = 3) -> float:
    """Tokens/s of ``run(new_tokens)`` (the concurrent requests on a setting other than the side's own; it returns
    their tokens), the median of ``rounds`` after a warm-up of 8 tokens each, as the sides' own runs are measured."""
    run(8)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        tokens = sum(map(len, run(new_tokens)))
        rates.append(tokens / (time.perf_counter() - t0))
    return statistics.median(rates)


def start_llama_server(gguf: str, slots: int, threads: int) -> tuple[subprocess.Popen, int]:
    """llama-server on ``gguf`` with ``slots`` parallel slots, on a free loopback port, once it answers /health."""
    import atexit
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(LLAMA_BIN), "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-c", str(1024 * slots),
         "-np", str(slots), "-t", str(threads), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.kill)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if json.load(r).get("status") == "ok":
                    return proc, port
        except (OSError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"llama-server did not start on {gguf}")
        time.sleep(0.5)


def ask_llama(port: int, prompt: str, new_tokens: int) -> dict:
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": new_tokens,
                       "temperature": 0, "cache_prompt": False}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        return json.load(r)


class LlamaCpp(common.Side):
    """llama.cpp's llama-server on the packaged GGUF, ``LLAMA_SLOTS`` parallel slots, the side's threads; in
    ``extra``, batch 1 and the concurrent requests on each of its files (Q4_1, and the F32 and Q8_0 re-encodings),
    one server with ``LLAMA_SLOTS`` slots each."""

    def __init__(self, config, args):
        super().__init__(config, args)
        self.proc = None
        if config["gguf"] is None:  # --quick
            return
        self.proc, self.port = start_llama_server(config["gguf"], LLAMA_SLOTS, args.threads)

    def _concurrent(self, new_tokens: int, port: int | None = None) -> list[list[int]]:
        if self.proc is None:
            return []
        port = port or self.port
        with ThreadPoolExecutor(len(self.config["prompts"])) as pool:
            answers = list(pool.map(lambda p: ask_llama(port, p, new_tokens), self.config["prompts"]))
        return [[0] * a["usage"]["completion_tokens"] for a in answers]  # units: tokens (the text is not compared)

    def _concurrent_rate(self, port: int) -> float:
        """The concurrent requests on another file's server, by :func:`concurrent_rate`."""
        return concurrent_rate(lambda new: self._concurrent(new, port), self.config["new_tokens"])

    def warmup(self):
        self._concurrent(8)

    def run(self):
        return self._concurrent(self.config["new_tokens"])

    def _batch1(self, port: int) -> float:
        """Decoding tokens/s of one request alone (the server's own timings), the median of 3 after a warm-up."""
        prompt, new = BATCH1_PROMPT, self.config["new_tokens"]
        ask_llama(port, prompt, 8)
        return statistics.median(ask_llama(port, prompt, new)["timings"]["predicted_per_second"] for _ in range(3))

    def extra(self) -> dict:
        if self.proc is None:
            return {}
        out = {"batch1_decode_tokens_per_s": self._batch1(self.port),
               "gguf_bytes": os.path.getsize(self.config["gguf"]), "batch1": {}}
        self.proc.kill()
        out["concurrent"] = {}
        for kind, path in self.config["gguf_variants"].items():
            if kind == "Q4_1":
                rate, concurrent = out["batch1_decode_tokens_per_s"], None  # the side's own run
            else:
                proc, port = start_llama_server(path, LLAMA_SLOTS, self.args.threads)
                try:
                    rate, concurrent = self._batch1(port), self._concurrent_rate(port)
                finally:
                    proc.kill()
            out["batch1"][kind] = {"decode_tokens_per_s": rate, "bytes": os.path.getsize(path)}
            if concurrent is not None:
                out["concurrent"][kind] = concurrent
        return out


def compare(base: list, eng: list, config: dict) -> common.Agreement:
    same = sum(b == e for b, e in zip(base, eng))
    tokens = sum(len(b) for b in base)
    matching = sum(next((i for i, (x, y) in enumerate(zip(b, e)) if x != y), min(len(b), len(e)))
                   for b, e in zip(base, eng))
    return common.Agreement(same / len(base), f"{same}/{len(base)} requests with identical greedy tokens "
                                              f"({matching}/{tokens} tokens before the first difference)",
                            same == len(base))


_BANDWIDTH: dict = {}


def bandwidth(config: dict) -> float:
    """The machine's read bandwidth, measured once per run (report and rows share it)."""
    if "b" not in _BANDWIDTH:
        _BANDWIDTH["b"] = common.measure_read_bandwidth(config["threads"], common.pick_device())
    return _BANDWIDTH["b"]


def batch1_rates(extra: dict) -> dict[str, dict]:
    """The engine's batch-1 decoding at each weights setting measured: {weights: {decode_tokens_per_s,
    bytes_per_token}}."""
    rates = {"fp32": {"decode_tokens_per_s": extra["batch1_decode_tokens_per_s"], "bytes_per_token":
                      extra["weight_bytes"]}}
    rates.update({w: extra[f"batch1_{w}"] for w in ENGINE_WEIGHTS if f"batch1_{w}" in extra})
    rates.update({f"{w}+compile": extra[f"batch1_{w}+compile"] for w in ENGINE_COMPILED
                  if f"batch1_{w}+compile" in extra})
    return rates


def report(reports: dict, config: dict) -> list[str]:
    extra = reports["engine"].extra
    bw = bandwidth(config)
    bound = bw / extra["weight_bytes"]
    b1 = extra["batch1_tokens_per_s"]
    peer = reports["llama"].extra.get("batch1", {}) if "llama" in reports and reports["llama"].extra else {}
    lines = []
    for weights, e in batch1_rates(extra).items():
        wb = bw / e["bytes_per_token"]
        mode = f", {e['compile_mode']}" if e.get("compile_mode") not in (None, "default") else ""
        compiled = f" (compiled at load{mode} in {e['compile_s']:.0f} s)" if e.get("compile_s") else ""
        line = (f"batch 1, {weights} weights{compiled}: engine {e['decode_tokens_per_s']:.1f} tokens/s decoding, "
                f"{e['bytes_per_token'] / 1e6:.0f} MB read per token -> bound {wb:.1f} tokens/s "
                f"({e['decode_tokens_per_s'] / wb:.0%} of it)")
        if "same_tokens" in e:
            line += f", greedy tokens {e['same_tokens']}/{e['tokens']} as the eager fp32 step's"
        kind = LLAMA_TYPES[weights.removesuffix("+compile")]
        if kind in peer:
            p, pb = peer[kind]["decode_tokens_per_s"], bw / peer[kind]["bytes"]
            line += (f"; llama.cpp {kind} {p:.1f} tokens/s, {peer[kind]['bytes'] / 1e6:.0f} MB -> bound {pb:.1f} "
                     f"({p / pb:.0%} of it); engine/llama.cpp {e['decode_tokens_per_s'] / p:.2f}x")
        lines.append(line)
    for weights, (rate, kind, p) in concurrent_rates(reports).items():
        line = f"{len(config['prompts'])} concurrent, {weights} weights: engine {rate:.1f} tokens/s"
        if p is not None:
            line += f"; llama.cpp {kind} with {LLAMA_SLOTS} slots {p:.1f} tokens/s; engine/llama.cpp {rate / p:.2f}x"
        lines.append(line)
    return lines + [f"memory read bandwidth {bw / 1e9:.1f} GB/s ({config['threads']} threads); weights "
            f"{extra['weight_bytes'] / 1e6:.0f} MB ({extra['dtype']}) read once per token at batch 1 -> bound "
            f"{bound:.1f} tokens/s",
            f"engine batch 1 ({extra.get('weights', 'fp32')} weights): {b1:.1f} tokens/s = {b1 / bound:.0%} of the bound (decoding only: "
            f"{extra['batch1_decode_tokens_per_s']:.1f} tokens/s = {extra['batch1_decode_tokens_per_s'] / bound:.0%}); "
            f"batch of {len(config['prompts'])}: {reports['engine'].per_s:.1f} tokens/s = "
            f"{reports['engine'].per_s / bound:.1f}x the batch-1 bound"]


# the targets at batch 1: fp32 at 70% of the bandwidth bound; int8 at least llama.cpp's Q8_0 and 0.8x its Q4
BATCH1_TARGETS = {"int8": (("Q8_0", 1.0), ("Q4_1", 0.8)), "int4": (("Q4_1", 0.8),), "fp32": (("F32", None),),
                  "bf16": (("BF16", None),)}  # (no target for bf16: the issue sets none)
BOUND_TARGET = 0.7
CONCURRENT_TARGET = 1.0  # 8 concurrent: at least llama.cpp's 8 parallel slots on its file of the same precision


def concurrent_rates(reports: dict) -> dict[str, tuple[float, str, float | None]]:
    """The 8 concurrent requests at each weights setting measured: {weights: (engine tokens/s, llama.cpp's file of
    the same precision, its tokens/s with the same number of slots or None where it was not measured)}."""
    eng = reports["engine"]
    ll = reports["llama"] if "llama" in reports and reports["llama"].extra else None
    peer = {"Q4_1": ll.per_s, **ll.extra.get("concurrent", {})} if ll is not None else {}
    rates = {eng.extra.get("weights", "fp32"): eng.per_s}
    names = [*ENGINE_WEIGHTS, *(f"{w}+compile" for w in ENGINE_COMPILED)]
    rates.update({w: eng.extra[f"concurrent_{w}"] for w in names if f"concurrent_{w}" in eng.extra})
    kinds = {w: LLAMA_TYPES.get(w.removesuffix("+compile")) for w in rates}  # (a compiled setting: its weights' file)
    return {w: (rate, kinds[w], peer.get(kinds[w])) for w, rate in rates.items() if kinds[w] is not None}


def rows(reports: dict, config: dict) -> list[dict]:
    """The engine against llama.cpp: 8 concurrent, and batch 1 at each weights setting against its file of the same
    precision (and int8 against Q4_1 too); the fp32 batch 1 against the bandwidth bound."""
    eng, task = reports["engine"], BENCH.task
    bw = bandwidth(config)
    rates = batch1_rates(eng.extra)
    out = []
    for name in ("fp32", "fp32+compile"):
        if name in rates:
            rate, bytes_ = rates[name]["decode_tokens_per_s"], rates[name]["bytes_per_token"]
            same, tokens = rates[name].get("same_tokens"), rates[name].get("tokens")
            agreement = (None, "the fraction of the bound is the ratio") if same is None else \
                (round(same / tokens, 4), f"greedy tokens identical to the eager fp32 step's, {same} of {tokens}")
            out.append(common.peer_row(task, f"bandwidth bound, batch 1 {name} ({bw / 1e9:.1f} GB/s over "
                                             f"{bytes_ / 1e6:.0f} MB per token)",
                                       (rate, "tokens/s"), (bw / bytes_, "tokens/s"), rate / (bw / bytes_),
                                       BOUND_TARGET, agreement, agreement_ok=same is None or same == tokens))
    if "llama" not in reports or not reports["llama"].extra:
        return out
    ll = reports["llama"]
    # the engine's default (fp32) against the packaged file as it is: different precisions, so no target here;
    # the targets are on the rows of the same precision below
    out.append(common.peer_row(task, f"llama.cpp llama-server Q4_1, {LLAMA_SLOTS} parallel slots (engine "
                                     f"{eng.extra.get('weights', 'fp32')} weights)",
                               (eng.per_s, "tokens/s"), (ll.per_s, "tokens/s"), eng.per_s / ll.per_s, None,
                               (None, "not compared: different weights (fp32 engine, Q4_1 GGUF)")))
    for weights, (rate, kind, p) in concurrent_rates(reports).items():
        if p is not None:
            out.append(common.peer_row(task, f"llama.cpp llama-server {kind}, {LLAMA_SLOTS} parallel slots "
                                             f"(engine {weights} weights)", (rate, "tokens/s"), (p, "tokens/s"),
                                       rate / p, CONCURRENT_TARGET,
                                       (None, "perplexity and greedy text: bench/generation_weights.py")))
    peer = ll.extra.get("batch1", {})
    for weights, pairs in [(w, p) for w0, p in BATCH1_TARGETS.items() for w in (w0, f"{w0}+compile")]:
        if weights not in rates:
            continue
        rate = rates[weights]["decode_tokens_per_s"]
        for kind, target in pairs:
            if kind in peer:
                p = peer[kind]["decode_tokens_per_s"]
                out.append(common.peer_row(task, f"llama.cpp {kind} batch 1 (engine {weights} weights)",
                                           (rate, "tokens/s"), (p, "tokens/s"), rate / p, target,
                                           (None, "perplexity and greedy text: bench/generation_weights.py")))
    return out


BENCH = common.Benchmark(
    task="text-generation", target=3.5,
    workload=lambda c: f"{len(c['prompts'])} concurrent chat requests, {c['new_tokens']} new tokens each, greedy, "
                       f"{c['model']}",
    script=__file__, prepare=prepare, compare=compare, units=lambda outputs, config: sum(map(len, outputs)),
    unit="tokens", report=report, rows=rows, baseline_name="transformers generate(), one request at a time",
    sides={"baseline": Baseline, "engine": EngineSide, **({"llama": LlamaCpp} if LLAMA_READY else {})})

if __name__ == "__main__":
    common.main(BENCH)
