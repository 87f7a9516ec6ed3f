"""A 2-D map of vectors: PCA (always available: numpy's SVD), or t-SNE (scikit-learn) or UMAP (umap-learn) when
chosen; and the bundled example lists of ``assets/wordlists/``.

    >>> texts, groups = wordlist("countries and capitals")
    >>> m = engine.embedding_map(texts, groups=groups, method="pca")     # sentence vectors (MiniLM)
    >>> m = engine.embedding_map(texts, model="SmolLM2-135M-Instruct")  # word vectors from its token table
    >>> [(p.text, p.x, p.y) for p in m.points]

Input lists are one item per line with an optional group after a ``|``: ``Paris | capital``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError
from . import embedding, word_vectors

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
MAX_POINTS = 2_000  # a map of more points is unreadable, and t-SNE and UMAP would take minutes
GROUP_SEPARATOR = "|"
WORDLISTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "wordlists"
#: the bundled example lists: name -> file in assets/wordlists/
WORDLISTS = {"animals": "animals.txt", "countries and capitals": "countries-capitals.txt",
             "verbs and past tenses": "verbs-past-tenses.txt", "Chinese and English pairs": "chinese-english.txt"}


@dataclasses.dataclass(frozen=True)
class MapPoint:
    text: str
    group: str  # "" when the list has no groups
    x: float
    y: float


@dataclasses.dataclass(frozen=True)
class EmbeddingMap:
    """Texts placed in 2-D so that texts with similar vectors land close together."""

    model: str
    kind: str  # "sentence vectors" | "word vectors"
    method: str  # "pca" | "tsne" | "umap"
    points: tuple[MapPoint, ...]
    explained: tuple[float, ...] = ()  # PCA: the share of the variance along x and along y
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "method": self.method, "explained": list(self.explained),
                "points": [dataclasses.asdict(p) for p in self.points], "notes": list(self.notes)}


def parse_lines(text: str) -> tuple[list[str], list[str] | None]:
    """One item per line, an optional group after the last ``|``: (texts, groups or None when no line has one).
    Blank lines are skipped."""
    texts, groups = [], []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        item, sep, group = line.rpartition(GROUP_SEPARATOR) if GROUP_SEPARATOR in line else (line, "", "")
        texts.append(item.strip())
        groups.append(group.strip())
    return texts, (groups if any(groups) else None)


def wordlist(name: str) -> tuple[list[str], list[str] | None]:
    """A bundled example list by name (see :data:`WORDLISTS`): (texts, groups)."""
    if name not in WORDLISTS:
        raise InvalidOptionsError(f"Unknown example list {name!r}; the lists are: {', '.join(WORDLISTS)}.")
    return parse_lines(wordlist_text(name))


def wordlist_text(name: str) -> str:
    """A bundled list's lines (``text | group``), without its comment lines."""
    if name not in WORDLISTS:
        raise InvalidOptionsError(f"Unknown example list {name!r}; the lists are: {', '.join(WORDLISTS)}.")
    lines = (WORDLISTS_DIR / WORDLISTS[name]).read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("#"))


def pca(vectors: np.ndarray, dims: int = 2) -> tuple[np.ndarray, tuple[float, ...]]:
    """The first ``dims`` principal components (n, dims) and the share of the variance each explains. Each axis's
    sign is fixed (its largest loading positive), so the same input always draws the same map."""
    x = vectors.astype(np.float64) - vectors.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dims]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    vt = vt * np.where(signs == 0, 1, signs)[:, None]
    coords = x @ vt.T
    total = float((s ** 2).sum())
    explained = tuple(float(v) / total if total > 0 else 0.0 for v in (s[:dims] ** 2))
    if coords.shape[1] < dims:  # fewer independent directions than axes (e.g. two points): pad with zeros
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
        explained += (0.0,) * (dims - len(explained))
    return coords, explained


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, tuple[float, ...]]:
    """``vectors`` (n, d) -> 2-D coordinates (n, 2) by ``method``, and PCA's explained variance (empty otherwise)."""
    n = len(vectors)
    if method == "pca":
        return pca(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))  # t-SNE needs perplexity < n
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                      metric="cosine").fit_transform(vectors.astype(np.float64))
        return coords, ()
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), metric="cosine", random_state=seed,
                            n_jobs=1, init="random" if n < 8 else "spectral")
        return reducer.fit_transform(vectors.astype(np.float32)), ()
    raise InvalidOptionsError(f"Unknown map method {method!r}; choose one of: {', '.join(METHODS)}.")


def embedding_map(engine: "Engine", texts: Sequence[str], model: str | None = None, method: str = "pca",
                  groups: Sequence[str] | None = None, seed: int = 0) -> EmbeddingMap:
    """Place ``texts`` (3 to 2,000) on a 2-D map by ``method`` ("pca", "tsne" or "umap"). ``model``: a sentence
    encoder (the default: sentence vectors) or a text-generation model (word vectors from its token-embedding table,
    a word of several tokens the mean of its pieces). ``groups``: one label per text, for colours."""
    method = (method or "pca").lower().replace("-", "")
    if method not in METHODS:
        raise InvalidOptionsError(f"Unknown map method {method!r}; choose one of: {', '.join(METHODS)}.")
    items = list(texts or [])
    if len(items) < 3:
        raise InvalidInputError(f"A map needs at least 3 items, got {len(items)}: give one word or sentence per line.")
    if len(items) > MAX_POINTS:
        raise InputTooLargeError(f"A map shows at most {MAX_POINTS:,} items, got {len(items):,}: pick a sample, or "
                                 "use search for large lists.")
    if groups is not None and len(groups) != len(items):
        raise InvalidInputError(f"{len(groups)} groups for {len(items)} items: give one group per item, or none.")
    notes: list[str] = []
    spec_task = engine.registry.get(model).task if model and model in engine.registry.names() else "embedding"
    if spec_task == "text-generation":
        vectors_of = word_vectors.word_vectors(engine, items, model)
        vectors = np.stack([w.vector for w in vectors_of])
        name, kind = vectors_of[0].model, "word vectors"
        split = [w for w in vectors_of if len(w.pieces) > 1]
        if split:
            notes.append(f"{len(split)} of {len(items)} items are several tokens in {name} (e.g. "
                         f"{split[0].word!r}: {' + '.join(repr(p.token) for p in split[0].pieces)}); each is the mean "
                         "of its tokens' embeddings.")
    else:
        result = embedding.embed(engine, items, model)
        vectors, name, kind = result.vectors, result.model, "sentence vectors"
    coords, explained = project(vectors, method, seed)
    if method == "pca":
        notes.append(f"PCA: x holds {explained[0]:.0%} of the variance, y {explained[1]:.0%}.")
    else:
        notes.append(f"{METHODS[method]} keeps neighbourhoods, not distances: only which points are near each other "
                     "means something (seed %d)." % seed)
    labels = list(groups) if groups is not None else [""] * len(items)
    points = tuple(MapPoint(t, str(g), float(x), float(y)) for t, g, (x, y) in zip(items, labels, coords))
    return EmbeddingMap(name, kind, method, points, explained, tuple(notes))
