"""Sentence embeddings: 10,000 sentences of 5 to 30 words through the packaged all-MiniLM-L6-v2. Baseline:
sentence-transformers' ``SentenceTransformer(folder).encode(texts)`` with its defaults (batch 32, length-sorted by
characters). Engine: ``engine.embed(texts)`` in its default configuration (length-sorted by tokens, batch 64).
Agreement: the largest difference of any vector component, at most 1e-5 on the fp32 path (which also checks the
pooling, the truncation at 256 tokens and the normalisation); where the engine runs reduced precision (bf16 on a CPU
with bf16 units, engine.device), every vector's cosine similarity with the fp32 one at least 0.99, as the issue asks. After the timed rounds the engine side also reports a
search over the 10,000 encoded sentences (the corpus cached, as a second search finds it: query encoding, scores and
top 10) and, given a benchmark file, the STS Spearman correlation:

    .venv/bin/python bench/embeddings.py [--quick] [--sentences N] [--sts PATH]

``--sts PATH`` (or ``LLM_LAB_STS``): a public STS benchmark file with human similarity scores, none of which is in the
repository: the original ``sts-test.csv`` (tab-separated: genre, file, year, id, score, sentence 1, sentence 2) or
sentence-transformers' ``stsbenchmark.tsv[.gz]`` (a header with ``split``, ``score``, ``sentence1``, ``sentence2``; its
test split is used). The Spearman correlation of the cosine similarities with the human scores is compared with the
figure published for all-MiniLM-L6-v2 on the STS benchmark's test set (MTEB: 82.03); the issue asks for 1 point.
Without a file that line says it was skipped. ``BENCH_EMBED_BATCH=N`` (engine side) tries another batch size.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import os
import sys
import tempfile
from pathlib import Path

import common
import inputs

PUBLISHED_STS_SPEARMAN = 82.03  # all-MiniLM-L6-v2, STSBenchmark test, cosine Spearman x 100 (MTEB results)
SEARCH_QUERIES = 21
COSINE = 0.99  # the issue: reduced precision keeps every vector's cosine with fp32 at least this


def _own_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sentences", type=int, default=None)
    parser.add_argument("--sts", default=os.environ.get("LLM_LAB_STS"))
    return parser.parse_known_args(argv)


OWN, REST = _own_args(sys.argv[1:])


def minilm_folder() -> str:
    from engine.config import Settings
    from engine.registry import Registry
    from engine.sources import resolve_files

    settings = Settings.from_env(offline=True)
    return str(resolve_files(Registry().default("embedding"), settings))


def prepare(args) -> dict:
    n = OWN.sentences or (64 if args.quick else 10_000)
    out = Path(tempfile.mkdtemp(prefix="llm-lab-bench-embeddings-"))
    return {"folder": minilm_folder(), "texts": inputs.sentences(n, 5, 30), "out": str(out),
            "sts": str(Path(OWN.sts).expanduser().resolve()) if OWN.sts else None}


class Baseline(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(config["folder"], device=args.device)

    def warmup(self):
        self.model.encode(self.config["texts"][:64])

    def run(self):
        import numpy as np

        vectors = self.model.encode(self.config["texts"], convert_to_numpy=True)
        path = Path(self.config["out"], "baseline.npy")
        np.save(path, vectors.astype(np.float32))
        return [str(path)]


class EngineSide(common.Side):
    def __init__(self, config, args):
        super().__init__(config, args)
        from engine import Engine
        from engine.registry import ModelSpec

        spec = ModelSpec("bench-minilm", "embedding", "sentence-encoder", f"path:{config['folder']}")
        self.engine = Engine(common.engine_settings(args), common.path_registry(spec))
        served = self.engine.served("embedding", "bench-minilm")  # load now (load time is reported apart)
        if os.environ.get("BENCH_EMBED_BATCH"):
            served.batch = int(os.environ["BENCH_EMBED_BATCH"])
            common._progress(f"experiment: engine batch {served.batch}")
        self.vectors = None

    def warmup(self):
        self.engine.embed(self.config["texts"][:64], model="bench-minilm")

    def run(self):
        import numpy as np

        self.vectors = self.engine.embed(self.config["texts"], model="bench-minilm").vectors
        path = Path(self.config["out"], "engine.npy")
        np.save(path, self.vectors)
        return [str(path)]

    def extra(self):
        return {**self._search(), **sts_spearman(self.engine, "bench-minilm", self.config["sts"])}

    def _search(self) -> dict:
        """Median and worst wall time of searches over the encoded corpus (found in the cache by its hash)."""
        import statistics
        import time

        from engine.tasks.embedding import CorpusCache

        texts = self.config["texts"]
        served = self.engine.served("embedding", "bench-minilm")
        served.corpora.put(CorpusCache.key(texts), self.vectors)  # what the first search of this corpus stores
        times, cpu = [], []
        for query in texts[:SEARCH_QUERIES]:
            t0, c0 = time.perf_counter(), time.process_time()
            result = self.engine.search(query[::-1], texts, model="bench-minilm", k=10)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # this process's CPU time, every thread: what a busy machine
            assert result.cached                  # cannot inflate
        return {"search_ms_median": 1000 * statistics.median(times), "search_ms_max": 1000 * max(times),
                "search_cpu_ms_median": 1000 * statistics.median(cpu), "search_corpus": len(texts)}


# --- STS ------------------------------------------------------------------------------------------------------------
def read_sts(path: Path) -> list[tuple[str, str, float]]:
    """(sentence 1, sentence 2, human score) of an STS benchmark file: the test split when the file has splits."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").splitlines()
    header = lines[0].lower().split("\t") if lines else []
    pairs = []
    if "sentence1" in header and "score" in header:
        for row in csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE):
            row = {k.lower(): v for k, v in row.items()}
            if row.get("split", "test") == "test":
                pairs.append((row["sentence1"], row["sentence2"], float(row["score"])))
    else:  # the original STS benchmark: genre, file, year, id, score, sentence1, sentence2[, sources]
        for line in lines:
            cells = line.split("\t")
            if len(cells) >= 7:
                pairs.append((cells[5], cells[6], float(cells[4])))
    return pairs


def sts_spearman(engine, model: str, path: str | None) -> dict:
    if not path:
        return {"sts": "skipped: no benchmark file (give --sts PATH or LLM_LAB_STS; none is in the repository)"}
    if not Path(path).exists():
        return {"sts": f"skipped: {path} does not exist"}
    from scipy.stats import spearmanr

    pairs = read_sts(Path(path))
    if not pairs:
        return {"sts": f"skipped: no sentence pairs found in {path}"}
    a = engine.embed([p[0] for p in pairs], model=model).vectors
    b = engine.embed([p[1] for p in pairs], model=model).vectors
    cosine = (a * b).sum(1)
    rho = 100 * float(spearmanr(cosine, [p[2] for p in pairs]).statistic)
    close = abs(rho - PUBLISHED_STS_SPEARMAN) <= 1
    return {"sts": f"STS Spearman {rho:.2f} on {len(pairs)} pairs of {Path(path).name} (published "
                   f"{PUBLISHED_STS_SPEARMAN}; within 1 point: {'yes' if close else 'NO'})", "sts_spearman": rho}


# --- agreement and report -----------------------------------------------------------------------------------------
def compare(base: list, eng: list, config: dict) -> common.Agreement:
    import numpy as np

    b, e = np.load(base[0]), np.load(eng[0])
    diff = float(np.abs(b.astype(np.float64) - e.astype(np.float64)).max())
    cos = float((b.astype(np.float64) * e.astype(np.float64)).sum(1).min())
    for p in (base[0], eng[0]):
        Path(p).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(base[0]).parent.rmdir()
    if b.shape != e.shape:
        return common.Agreement(diff, f"vectors differ in shape: {b.shape} vs {e.shape}", False)
    if diff <= 1e-5:
        return common.Agreement(diff, f"{len(b)}/{len(e)} vectors identical to 1e-5 (max |Δ| {diff:.1e}, lowest "
                                      f"cosine {cos:.7f})", True)
    low = int((b.astype(np.float64) * e.astype(np.float64)).sum(1).__lt__(COSINE).sum())
    return common.Agreement(diff, f"reduced precision: lowest cosine with fp32 {cos:.5f} ({low} of {len(b)} vectors "
                                  f"below {COSINE}; max |Δ| {diff:.1e})", cos >= COSINE)


def report(reports: dict, config: dict) -> list[str]:
    extra = reports["engine"].extra
    lines = []
    if "search_ms_median" in extra:
        lines.append(f"search over {extra['search_corpus']:,} encoded sentences: median "
                     f"{extra['search_ms_median']:.1f} ms, worst {extra['search_ms_max']:.1f} ms of "
                     f"{SEARCH_QUERIES} (target < 50 ms); CPU time median {extra['search_cpu_ms_median']:.1f} ms")
    lines.append(extra.get("sts", "STS: not measured"))
    return lines


BENCH = common.Benchmark(
    task="embeddings", target=1.0,
    workload=lambda c: f"{len(c['texts']):,} sentences of 5-30 words, all-MiniLM-L6-v2 (packaged), "
                       "engine.embed vs sentence-transformers encode",
    script=__file__, prepare=prepare, sides={"baseline": Baseline, "engine": EngineSide}, compare=compare,
    units=lambda outputs, config: len(config["texts"]), unit="sentences", report=report)

if __name__ == "__main__":
    common.main(BENCH, REST)
