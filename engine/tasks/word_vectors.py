"""Word vectors from a causal language model's token-embedding table, and the next token as an inner product.

A language model's first layer is a table with one vector per token, vec(w); its last layer (when the model ties
them, as SmolLM2 and the GPTs of the Pretrain tab do) scores every token w as the next one by the inner product
<vec(w), h> of that same vector with the context vector h (the final hidden state, after the final norm), and
P(w | context) = softmax over the vocabulary of those inner products.

- :func:`word_vector`: a word's vector: its tokens' embeddings, averaged when it is several tokens (the result says
  how it split). Byte-level vocabularies (SmolLM2, GPT-2) hold most words twice, with and without a leading space;
  the spelling with fewer tokens is used, the spaced one (a word inside a sentence) on a tie.
- :func:`neighbours` and :func:`analogy`: the vocabulary's tokens closest by cosine similarity to a word, or to
  a - b + c; the inputs themselves (in any case, with or without a space) are left out.
- :func:`logits_as_inner_products`: for a prompt, the top candidates' inner products with the context vector beside
  the softmax of those and the model's own probabilities, with the largest difference over the whole vocabulary.

The model's weights are read, never changed; the small matrix products run in the caller's thread.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError, UnknownModelError
from .common import check_text

if TYPE_CHECKING:
    from ..core import Engine
    from .generation import CausalLM

log = logging.getLogger(__name__)

TASK = "text-generation"
MAX_WORD_CHARS = 100
MAX_PIECES = 32  # a "word" of more tokens than this is a sentence: use sentence vectors
MAX_K = 200
_SCAN = 64  # candidates looked at beyond k, so that k remain after the inputs and special tokens are left out
_CHUNK = 8192  # vocabulary rows per float64 block in the inner-product check (8192 x 576 doubles = 38 MB)


# --- results ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Piece:
    token_id: int
    token: str  # the token decoded on its own (a byte-level piece of a character may show as "�")


@dataclasses.dataclass(frozen=True)
class WordVector:
    """A word's vector in a model's token-embedding table, and how the word split into tokens."""

    model: str
    word: str
    pieces: tuple[Piece, ...]
    vector: np.ndarray  # (dim,), float32: the mean of the pieces' embeddings

    @property
    def note(self) -> str:
        """How the word split, in words (empty for a single token)."""
        if len(self.pieces) == 1:
            return ""
        shown = " + ".join(repr(p.token) for p in self.pieces)
        return (f"{self.word!r} is {len(self.pieces)} tokens in {self.model} ({shown}): its vector is the mean of "
                "their embeddings.")

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "pieces": [dataclasses.asdict(p) for p in self.pieces], "note": self.note}


@dataclasses.dataclass(frozen=True)
class Neighbour:
    token_id: int
    token: str
    score: float  # cosine similarity with the query vector


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """The tokens nearest to a word (or to an analogy's a - b + c) by cosine similarity, best first."""

    model: str
    query: str  # "king", or "king - man + woman"
    words: tuple[WordVector, ...]  # the input words and how each split into tokens
    neighbours: tuple[Neighbour, ...]
    vocab_size: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "query": self.query, "vocab_size": self.vocab_size,
                "words": [w.to_dict() for w in self.words],
                "neighbours": [dataclasses.asdict(n) for n in self.neighbours], "notes": list(self.notes)}


@dataclasses.dataclass(frozen=True)
class InnerProduct:
    token_id: int
    token: str
    inner_product: float  # <vec(w), h>: the token's logit
    embedding_norm: float  # |vec(w)|
    cosine: float  # inner_product / (|vec(w)| |h|)
    prob_from_inner_products: float  # exp(<vec(w), h>) / sum over the vocabulary, in float64
    model_prob: float  # the model's own probability (its forward pass), softmax in float64


@dataclasses.dataclass(frozen=True)
class InnerProducts:
    """P(next token | prompt) = softmax(<vec(w), h>), checked against the model's own probabilities."""

    model: str
    prompt_tokens: int
    context_norm: float  # |h|
    candidates: tuple[InnerProduct, ...]  # the model's most likely next tokens, best first
    max_abs_difference: float  # max over the whole vocabulary of |softmax(inner products) - model's probability|
    tolerance: float  # what float rounding allows for that difference (see :func:`rounding_bound`)
    notes: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        return self.max_abs_difference <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "prompt_tokens": self.prompt_tokens, "context_norm": self.context_norm,
                "candidates": [dataclasses.asdict(c) for c in self.candidates],
                "max_abs_difference": self.max_abs_difference, "tolerance": self.tolerance, "agrees": self.agrees,
                "notes": list(self.notes)}


# --- the table ----------------------------------------------------------------------------------------------------
class _Table:
    """A served model's input-embedding matrix (V, d), its row norms, and its special tokens."""

    def __init__(self, served: "CausalLM") -> None:
        self.weight = served.model.get_input_embeddings().weight.detach()  # (V, d), shared with the model
        with torch.inference_mode():
            self.norms = self.weight.float().norm(dim=1).clamp(min=1e-12)  # (V,)
        self.special = frozenset(int(i) for i in served.tokenizer.all_special_ids)

    def cosines(self, q: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every row with ``q`` (d,): (V,) float32."""
        with torch.inference_mode():
            dots = (self.weight @ q.to(self.weight.dtype)).float()
            return dots / (self.norms * q.float().norm().clamp(min=1e-12))


_tables: "weakref.WeakKeyDictionary[Any, _Table]" = weakref.WeakKeyDictionary()  # dies with the served model
_tables_lock = threading.Lock()


def _table(served: "CausalLM") -> _Table:
    with _tables_lock:
        table = _tables.get(served)
        if table is None:
            table = _tables[served] = _Table(served)
        return table


def causal_lm(engine: "Engine", model: str | None) -> "CausalLM":
    """The loaded text-generation model whose token-embedding table gives the word vectors; another task's model gets
    a message that names the ones that have such a table."""
    try:
        spec = engine.spec(TASK, model)
    except UnknownModelError:
        if model and model in engine.registry.names():
            other = engine.registry.get(model)
            usable = ", ".join(s.name for s in engine.registry.for_task(TASK))
            hint = (" For sentence vectors use engine.embed / engine.similarity / engine.search with it."
                    if other.task == "embedding" else "")
            raise InvalidOptionsError(f"{model} is not a text-generation model (its task: {other.task}): word "
                                      "vectors come from a text-generation model's token-embedding table, one of: "
                                      f"{usable}.{hint}") from None
        raise
    return engine.served(TASK, spec.name)


def _missing_characters(served: "CausalLM", word: str) -> list[str]:
    """The characters of ``word`` that the tokenizer cannot spell (unknown token, or dropped)."""
    tok, unk = served.tokenizer, served.tokenizer.unk_token_id
    missing = []
    for ch in dict.fromkeys(word):
        if ch.isspace():
            continue
        ids = tok.encode(ch, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids and ch != tok.unk_token) or ch not in tok.decode(ids):
            missing.append(ch)
    return missing


def word_vector(engine: "Engine", word: str, model: str | None = None) -> WordVector:
    """``word``'s vector in the token-embedding table of ``model`` (a text-generation model; SmolLM2 by default):
    its token's embedding, or the mean of its tokens' embeddings (``pieces`` says how it split)."""
    return _word_vector(causal_lm(engine, model), word)


def _word_vector(served: "CausalLM", word: Any) -> WordVector:
    name = served.spec.name
    word = check_text(word, "word", MAX_WORD_CHARS)
    tok = served.tokenizer
    with served.tokenizer_lock:
        plain = tok.encode(word, add_special_tokens=False)
        spaced = tok.encode(" " + word, add_special_tokens=False)
        missing = _missing_characters(served, word)
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        raise InvalidInputError(f"{word!r}: the character(s) {shown} are not in the vocabulary of {name} "
                                f"({len(tok):,} tokens, learnt from its training text). Use a word made of its "
                                "characters, or pick a model with a byte-level vocabulary such as SmolLM2.")
    ids = spaced if spaced and len(spaced) <= len(plain) else plain
    if not ids:
        raise InvalidInputError(f"{word!r} gives no tokens in {name}; type a word.")
    if len(ids) > MAX_PIECES:
        raise InputTooLargeError(f"{word[:40]!r} is {len(ids)} tokens in {name}; a word vector averages at most "
                                 f"{MAX_PIECES}. For a phrase or a sentence, use sentence vectors (engine.embed).")
    table = _table(served)
    with torch.inference_mode():
        vector = table.weight[torch.tensor(ids, device=table.weight.device)].float().mean(0).cpu().numpy()
    return WordVector(name, word, tuple(Piece(i, served.token_text(i)) for i in ids), vector)


def _normal(text: str) -> str:
    return text.strip().lower()


def _nearest(served: "CausalLM", query: torch.Tensor, k: int, exclude_ids: set[int],
             exclude_words: set[str]) -> tuple[Neighbour, ...]:
    table = _table(served)
    scores = table.cosines(query.to(table.weight.device))
    skip = exclude_ids | table.special
    found: list[Neighbour] = []
    scan = k + len(skip) + _SCAN
    while len(found) < k and scan <= 4 * scores.numel():
        values, ids = scores.topk(min(scan, scores.numel()))
        found = []
        for score, i in zip(values.tolist(), ids.tolist()):
            if i in skip:
                continue
            text = served.token_text(i)
            if _normal(text) in exclude_words or not text.strip():
                continue
            found.append(Neighbour(i, text, score))
            if len(found) == k:
                break
        if scan >= scores.numel():
            break
        scan *= 4
    return tuple(found)


def _k(k: Any) -> int:
    if isinstance(k, float) and k.is_integer():
        k = int(k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidOptionsError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    return k


def neighbours(engine: "Engine", word: str, model: str | None = None, k: int = 10) -> Neighbours:
    """The ``k`` tokens of ``model``'s vocabulary (a text-generation model; SmolLM2 by default) closest to ``word``
    by cosine similarity of their embeddings; the word itself (any case, with or without a space) is left out."""
    k = _k(k)
    served = causal_lm(engine, model)
    w = _word_vector(served, word)
    found = _nearest(served, torch.from_numpy(w.vector), k, {p.token_id for p in w.pieces}, {_normal(w.word)})
    notes = tuple(filter(None, [w.note]))
    return Neighbours(served.spec.name, w.word, (w,), found, served.vocab_size, notes)


def analogy(engine: "Engine", a: str, b: str, c: str, model: str | None = None, k: int = 10) -> Neighbours:
    """Vector arithmetic: the ``k`` tokens closest to vec(a) - vec(b) + vec(c) ("king" - "man" + "woman"), the three
    inputs left out of the answers."""
    k = _k(k)
    served = causal_lm(engine, model)
    words = tuple(_word_vector(served, w) for w in (a, b, c))
    query = torch.from_numpy(words[0].vector - words[1].vector + words[2].vector)
    found = _nearest(served, query, k, {p.token_id for w in words for p in w.pieces},
                     {_normal(w.word) for w in words})
    notes = tuple(filter(None, [w.note for w in words]))
    label = f"{words[0].word} - {words[1].word} + {words[2].word}"
    return Neighbours(served.spec.name, label, words, found, served.vocab_size, notes)


# --- the next token as an inner product ---------------------------------------------------------------------------
def tied(served: "CausalLM") -> bool:
    """Whether the model scores tokens with its input-embedding table (tied input and output embeddings)."""
    inp, out = served.model.get_input_embeddings(), served.model.get_output_embeddings()
    if out is None or getattr(out, "bias", None) is not None or out.weight.layout != torch.strided:
        return False  # (an opaque packed copy, engine.weights.BF16Linear, is a rounded copy, not the table)
    return inp.weight.data_ptr() == out.weight.data_ptr() or (
        inp.weight.shape == out.weight.shape and bool(torch.equal(inp.weight, out.weight)))


def rounding_bound(weight: torch.Tensor, h: torch.Tensor) -> float:
    """How far the model's probabilities may differ from the exact softmax of inner products through rounding alone.

    Each logit is a d-term dot product computed in the weights' dtype (unit roundoff u): its error is at most
    gamma_d * sum_j |w_ij h_j|, gamma_d = d u / (1 - d u) (Higham, Accuracy and Stability, 3.1). A logit error of at
    most delta moves each probability p by at most p (exp(2 delta) - 1) <= exp(2 delta) - 1. Bounded in float64."""
    u = torch.finfo(weight.dtype).eps / 2
    d = weight.shape[1]
    gamma = d * u / (1 - d * u)
    h_abs = h.double().abs()
    worst = max(float((weight[i:i + _CHUNK].double().abs() @ h_abs).max()) for i in range(0, weight.shape[0], _CHUNK))
    delta = gamma * worst
    return math.expm1(2 * delta) + 1e-12  # 1e-12: the float64 softmax's own rounding, far below


def logits_as_inner_products(engine: "Engine", prompt: str, model: str | None = None, k: int = 10) -> InnerProducts:
    """For ``prompt`` (plain text, no chat template) and a model with tied embeddings: the context vector h (the final
    hidden state after the final norm), each of the ``k`` most likely next tokens' inner product <vec(w), h> with it,
    the softmax of the inner products over the whole vocabulary (float64) beside the model's own probabilities, and
    the largest difference between the two over the vocabulary with the tolerance rounding allows."""
    k = _k(k)
    check_text(prompt, "prompt", engine.settings.max_chars)
    served = causal_lm(engine, model)
    name = served.spec.name
    if not tied(served):
        raise InvalidOptionsError(f"{name} does not tie its input and output embeddings: its logits are inner "
                                  "products with a separate output matrix, not with vec(w). Pick a model with tied "
                                  "embeddings, such as SmolLM2 or a GPT trained in the Pretrain tab.")
    prepared = served.prepare(prompt, 1, chat=False)
    ids = torch.tensor([prepared.ids], device=served.device)
    table = _table(served)
    with torch.inference_mode():
        out = served.model(input_ids=ids, output_hidden_states=True, use_cache=False)
        h = out.hidden_states[-1][0, -1]  # (d,): the context vector, after the final norm
        model_logits = out.logits[0, -1].double()  # (V,): the model's own forward pass
        w = table.weight
        inner = torch.cat([w[i:i + _CHUNK].double() @ h.double() for i in range(0, w.shape[0], _CHUNK)])  # (V,)
        p_inner = torch.softmax(inner, dim=0)
        p_model = torch.softmax(model_logits[:inner.shape[0]], dim=0)
        difference = float((p_inner - p_model).abs().max())
        tolerance = rounding_bound(w, h)
        h_norm = float(h.double().norm())
        top = p_model.topk(min(k, p_model.numel()))
    candidates = tuple(
        InnerProduct(i, served.token_text(i), float(inner[i]), float(table.norms[i]),
                     float(inner[i]) / (float(table.norms[i]) * h_norm) if h_norm else 0.0,
                     float(p_inner[i]), float(p_model[i]))
        for i in top.indices.tolist())
    notes = list(prepared.notes)
    if difference > tolerance:
        notes.append(f"The softmax of the inner products differs from {name}'s probabilities by {difference:.2e}, "
                     f"more than rounding allows ({tolerance:.2e}): the model changes its logits after the inner "
                     "product (a scale or a cap).")
    return InnerProducts(name, len(prepared.ids), h_norm, candidates, difference, tolerance, tuple(notes))


def word_vectors(engine: "Engine", words: Sequence[str], model: str | None = None) -> list[WordVector]:
    """:func:`word_vector` of each word, all from one model."""
    served = causal_lm(engine, model)
    return [_word_vector(served, w) for w in words]
