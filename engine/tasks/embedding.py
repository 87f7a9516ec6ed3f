"""Sentence embeddings with a sentence encoder (all-MiniLM-L6-v2): mean-pooled, L2-normalised token vectors.

The smallest task, and the template of the others: ``load`` builds a served model whose ``run_batch`` tokenizes
(prepare), runs the encoder (forward, the only step on the device) and returns plain numpy arrays (postprocess).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import InvalidInputError
from ..registry import ModelSpec
from ..worker import Request
from .common import check_text, length_sorted_batches

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)
BATCH = 32  # sentences per forward pass


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """One unit-length vector per input text; ``vectors @ vectors.T`` is the cosine similarity."""

    model: str
    texts: tuple[str, ...]
    vectors: np.ndarray  # (n_texts, dim), float32

    def similarity(self) -> np.ndarray:
        return self.vectors @ self.vectors.T


class SentenceEncoder:
    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec, self.device = spec, device
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device).eval()
        self.nbytes = module_nbytes(self.model)

    def batch_key(self, payload: tuple[str, ...]) -> Hashable:
        return None  # any texts can share a batch

    def run_batch(self, requests: list[Request]) -> None:
        texts = [t for r in requests for t in r.payload]
        vectors = np.empty((len(texts), self.model.config.hidden_size), np.float32)
        for idx in length_sorted_batches(texts, len, BATCH):
            vectors[idx] = self._encode([texts[i] for i in idx])
        start = 0
        for r in requests:
            r.finish(Embeddings(self.spec.name, tuple(r.payload), vectors[start:start + len(r.payload)]))
            start += len(r.payload)

    def _encode(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # (batch, tokens, dim)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()


def load(spec: ModelSpec, files: Path, engine: "Engine") -> SentenceEncoder:
    return SentenceEncoder(spec, files, engine.policy.device, engine.policy.dtype)


def embed(engine: "Engine", texts: str | Sequence[str], model: str | None = None) -> Embeddings:
    """Embed one text or a list of texts: ``engine.embed(["a cat", "a kitten"]).similarity()``."""
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise InvalidInputError("Give at least one text to embed.")
    cleaned = tuple(check_text(t, "text", engine.settings.max_chars) for t in items)
    return engine.run("embedding", model, cleaned)
