"""Sentence vectors with a sentence encoder (all-MiniLM-L6-v2): the encoder's token vectors pooled as the model was
trained (mean over the attention mask for MiniLM, read from its ``1_Pooling/config.json``), cut at its
``max_seq_length`` and L2-normalised, so that a dot product is the cosine similarity.

The template of the tasks: ``load`` builds a served model whose ``run_batch`` tokenizes (prepare), runs the encoder
(forward, the only step on the device) and returns plain numpy arrays (postprocess). The public API:

    >>> engine.embed(["A man plays a guitar.", "Someone makes music."]).similarity()
    >>> engine.similarity(["a cat"], ["a kitten", "a car"]).matrix
    >>> engine.search("music", corpus, k=5).hits      # the corpus is encoded once, then found again by its hash

Speed: texts are tokenized once, sorted by their number of tokens and cut into batches of similar length, so almost
no compute goes to padding (bench/embeddings.py measures it against sentence-transformers' ``encode``).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError, UnknownModelError
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..weights import apply_onednn
from ..worker import Progress, Request
from .common import check_text

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "embedding"
BATCH = 32  # sentences per forward pass: the least CPU time per sentence of 16, 32, 64, 128 (bench/embeddings.py)
MAX_TEXTS = 10_000  # the most texts one call embeds or searches
MAX_SIMILARITY = 1_000  # the most texts on each side of a similarity matrix
MAX_K = 1_000
CORPORA_KEPT = 4  # encoded corpora kept per loaded encoder, most recently used first (10,000 x 384 floats = 15 MB)


# --- results ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Embeddings:
    """One unit-length vector per input text; ``vectors @ vectors.T`` is the cosine similarity."""

    model: str
    texts: tuple[str, ...]
    vectors: np.ndarray  # (n_texts, dim), float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def similarity(self) -> np.ndarray:
        return self.vectors @ self.vectors.T

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim, "texts": list(self.texts),
                "vectors": self.vectors.astype(float).tolist()}


@dataclasses.dataclass(frozen=True)
class SimilarityMatrix:
    """Cosine similarity of every text in ``texts_a`` (rows) with every text in ``texts_b`` (columns)."""

    model: str
    texts_a: tuple[str, ...]
    texts_b: tuple[str, ...]
    matrix: np.ndarray  # (len(texts_a), len(texts_b)), float32, in [-1, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "texts_a": list(self.texts_a), "texts_b": list(self.texts_b),
                "matrix": self.matrix.astype(float).tolist()}


@dataclasses.dataclass(frozen=True)
class SearchHit:
    rank: int  # 1 for the best
    index: int  # the sentence's position in the corpus (0-based)
    text: str
    score: float  # cosine similarity with the query


@dataclasses.dataclass(frozen=True)
class SearchResult:
    model: str
    query: str
    hits: tuple[SearchHit, ...]  # best first
    corpus_size: int
    cached: bool  # the corpus's vectors came from the cache (it was encoded by an earlier search)
    seconds: float  # the whole call, encoding included

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "query": self.query, "corpus_size": self.corpus_size, "cached": self.cached,
                "seconds": round(self.seconds, 4), "hits": [dataclasses.asdict(h) for h in self.hits]}


# --- the served model ---------------------------------------------------------------------------------------------
def _sentence_transformers_config(folder: Path) -> tuple[int | None, str]:
    """(max_seq_length, pooling mode) from a sentence-transformers folder; (None, "mean") when it has none."""
    max_len, pooling = None, "mean"
    with contextlib.suppress(OSError, KeyError, ValueError):
        max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    with contextlib.suppress(OSError, KeyError, ValueError):
        config = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modes = [m for m in ("cls_token", "mean_tokens", "max_tokens") if config.get(f"pooling_mode_{m}")]
        if modes:
            pooling = modes[0].split("_")[0]
    return max_len, pooling


class CorpusCache:
    """Encoded corpora by the hash of their texts, the most recently used kept (thread-safe)."""

    def __init__(self, keep: int = CORPORA_KEPT) -> None:
        self.keep = keep
        self._vectors: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(texts: Sequence[str]) -> str:
        """The corpus's identity: SHA-256 of its texts joined by NUL, which no checked text contains."""
        return hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            vectors = self._vectors.get(key)
            if vectors is not None:
                self._vectors.move_to_end(key)
            return vectors

    def put(self, key: str, vectors: np.ndarray) -> None:
        with self._lock:
            self._vectors[key] = vectors
            self._vectors.move_to_end(key)
            while len(self._vectors) > self.keep:
                self._vectors.popitem(last=False)


class SentenceEncoder:
    """A sentence encoder and its tokenizer; ``run_batch`` embeds every text of the requests it is given."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype, batch: int = BATCH) -> None:
        self.spec, self.device, self.batch = spec, device, batch
        self.tokenizer = load_tokenizer(folder)
        self.model = pretrained("AutoModel", folder, dtype, use_safetensors=True).to(device).eval()
        apply_onednn(self.model)  # fp32 on the CPU: oneDNN's products (engine.weights.OneDNNLinear)
        self.nbytes = module_nbytes(self.model)
        max_len, self.pooling = _sentence_transformers_config(Path(folder))
        limits = [max_len, getattr(self.model.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        self.max_tokens = min(int(n) for n in limits if n and n < 10**7)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.dim = int(self.model.config.hidden_size)
        self.corpora = CorpusCache()
        self.tokenizer_lock = threading.Lock()

    def batch_key(self, payload: tuple[str, ...]) -> Hashable:
        return None  # any texts can share a batch

    def run_batch(self, requests: list[Request]) -> None:
        texts = [t for r in requests for t in r.payload]
        with self.tokenizer_lock:
            ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # by tokens: batches of equal length
        vectors = np.empty((len(texts), self.dim), np.float32)
        done = 0
        for start in range(0, len(order), self.batch):
            if all(r.cancelled for r in requests):
                break
            chunk = order[start:start + self.batch]
            vectors[chunk] = self._encode([ids[i] for i in chunk])
            done += len(chunk)
            for r in requests:
                r.report(done / len(texts), f"encoded {done:,} of {len(texts):,} texts")
        start = 0
        for r in requests:
            r.finish(Embeddings(self.spec.name, tuple(r.payload), vectors[start:start + len(r.payload)]))
            start += len(r.payload)

    def _encode(self, ids: list[list[int]]) -> np.ndarray:
        """Token ids of one batch (similar lengths) -> unit vectors (batch, dim)."""
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (batch, tokens, dim)
            hidden = hidden.float()
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "max":
                pooled = hidden.masked_fill(mask[..., None] == 0, -1e9).amax(1)
            else:  # mean over the real tokens, as sentence-transformers' Pooling does
                weights = mask[..., None].to(hidden.dtype)  # (batch, tokens, 1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()


def load(spec: ModelSpec, files: Path, engine: "Engine") -> SentenceEncoder:
    return SentenceEncoder(spec, files, engine.policy.device, engine.policy.encoder_dtype)


# --- the public API ---------------------------------------------------------------------------------------------------
def sentence_spec(engine: "Engine", model: str | None) -> ModelSpec:
    """The sentence encoder called ``model`` (or the default); a model of another task gets a message that names the
    sentence encoders, and for a text-generation model the word-vector functions that do use it."""
    try:
        return engine.spec(TASK, model)
    except UnknownModelError:
        if model and model in engine.registry.names():
            other = engine.registry.get(model)
            encoders = ", ".join(s.name for s in engine.registry.for_task(TASK)) or "none"
            hint = (" Its token-embedding table gives word vectors: engine.neighbours(word, model=...) or the "
                    "Word vectors section of the Embeddings tab." if other.task == "text-generation" else "")
            raise InvalidOptionsError(f"{model} is not a sentence encoder (its task: {other.task}): sentence "
                                      f"vectors need one of: {encoders}.{hint}") from None
        raise


def check_texts(engine: "Engine", texts: str | Sequence[str], what: str = "texts",
                limit: int = MAX_TEXTS) -> tuple[str, ...]:
    """``texts`` (one text or a list) checked and stripped; an empty list or more than ``limit`` are refused."""
    items = [texts] if isinstance(texts, str) else list(texts) if texts is not None else []
    if not items:
        raise InvalidInputError(f"The {what} list is empty: give at least one text (one per line).")
    if len(items) > limit:
        raise InputTooLargeError(f"The {what} list has {len(items):,} items; the limit is {limit:,}. Split it into "
                                 f"parts of at most {limit:,}.")
    return tuple(check_text(t, f"{what} item {i + 1}", engine.settings.max_chars) for i, t in enumerate(items))


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidOptionsError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}.")
    return value


def embed(engine: "Engine", texts: str | Sequence[str], model: str | None = None,
          progress: Progress | None = None) -> Embeddings:
    """Unit-length sentence vectors, one per text (at most 10,000): ``engine.embed(["a cat", "a kitten"])``.
    ``progress(fraction, message)`` is called after each batch."""
    cleaned = check_texts(engine, texts)
    return engine.run(TASK, sentence_spec(engine, model).name, cleaned, progress)


def similarity(engine: "Engine", texts_a: str | Sequence[str], texts_b: str | Sequence[str] | None = None,
               model: str | None = None) -> SimilarityMatrix:
    """The cosine similarity of each of ``texts_a`` with each of ``texts_b`` (``texts_a`` with itself when
    ``texts_b`` is None or empty); at most 1,000 texts on each side."""
    a = check_texts(engine, texts_a, "texts_a", MAX_SIMILARITY)
    b = check_texts(engine, texts_b, "texts_b", MAX_SIMILARITY) if texts_b else a
    vectors = embed(engine, a + b if b is not a else a, model)
    va, vb = vectors.vectors[:len(a)], (vectors.vectors[len(a):] if b is not a else vectors.vectors)
    return SimilarityMatrix(vectors.model, a, b, np.clip(va @ vb.T, -1.0, 1.0))


def search(engine: "Engine", query: str, corpus: Sequence[str], model: str | None = None, k: int = 10,
           progress: Progress | None = None) -> SearchResult:
    """The ``k`` sentences of ``corpus`` (at most 10,000) closest in meaning to ``query``, best first, with their
    cosine similarity. The corpus's vectors are kept by the hash of its texts, so searching it again encodes only the
    query."""
    t0 = time.perf_counter()
    k = _whole("k", k, 1, MAX_K)
    query = check_text(query, "query", engine.settings.max_chars)
    texts = check_texts(engine, corpus, "corpus")
    spec = sentence_spec(engine, model)
    served: SentenceEncoder = engine.served(TASK, spec.name)
    key = CorpusCache.key(texts)
    vectors = served.corpora.get(key)
    cached = vectors is not None
    if vectors is None:
        vectors = engine.run(TASK, spec.name, texts, progress).vectors
        served.corpora.put(key, vectors)
    q = engine.run(TASK, spec.name, (query,)).vectors[0]
    scores = vectors @ q  # (n,)
    k = min(k, len(texts))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    hits = tuple(SearchHit(rank + 1, int(i), texts[i], float(scores[i])) for rank, i in enumerate(top))
    return SearchResult(spec.name, query, hits, len(texts), cached, time.perf_counter() - t0)
