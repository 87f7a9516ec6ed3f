"""Inside the model: attention maps. For a prompt (a causal, GPT-type model) or a sentence (an encoder: the QA and
sentiment classifiers, MiniLM), how much each token attends to every other, per layer and per head, read from the
model's own attention weights: softmax(Q K^T / sqrt(d) + mask) as the model computes it.

Fast attention kernels (SDPA, flash) never build that matrix, so the model is loaded a second time with the plain
("eager") attention, which does; its weights are shared with nothing, so the generation and classification workers
keep their fast kernels. That copy is an ordinary loaded model in the engine's cache (named ``NAME · attention``): it
counts against the memory budget, shows in the Engine tab, and is unloaded like any other.

Two heads are picked out, as interpretability work usually finds them: the one that attends most to the *previous*
token (the mean, over positions i >= 1, of A[i, i-1]), and the one that attends most to the *first* token (the mean
of A[i, 0], an "attention sink": a head with nothing to look for parks its attention there).

    >>> maps = engine.attention("The cat sat on the mat because it was tired.")
    >>> maps.tokens, maps.weights.shape          # (layers, heads, tokens, tokens); each row sums to 1
    >>> maps.previous_token_head, maps.first_token_head
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable

import numpy as np
import torch

from ..cache import module_nbytes
from ..errors import CancelledError, InputTooLargeError, InvalidInputError, InvalidOptionsError
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..worker import Request
from .common import check_text

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

FAMILY = "attention"  # the family of the eager-attention copies (engine.core.FAMILY_MODULES)
SUFFIX = " · attention"
#: the families whose models have self-attention over the text, and whether it is causal (each token sees only the past)
SUPPORTED: dict[str, bool] = {"causal-lm": True, "extractive-qa": False, "sequence-classification": False,
                              "sentence-encoder": False}
MAX_TOKENS = 128  # maps are (layers, heads, T, T): 30 x 9 x 128 x 128 floats is 18 MB; longer texts are unreadable


@dataclasses.dataclass(frozen=True)
class HeadPick:
    """One head, and how strongly it does what it was picked for (a mean attention weight, 0 to 1)."""

    layer: int
    head: int
    score: float


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """The attention of every head of a model over one text.

    ``weights[l, h, i, j]`` is how much token ``i`` attends to token ``j`` in layer ``layers[l]``, head ``h``; each
    row sums to 1 and, in a causal model, is 0 for j > i. ``previous_token_head`` and ``first_token_head`` are picked
    over every layer, whichever ``layers`` were kept."""

    model: str
    text: str
    tokens: tuple[str, ...]  # each token as text (a byte-level piece of a character shows as its raw token)
    token_ids: tuple[int, ...]
    weights: np.ndarray  # (len(layers), heads, T, T) float32
    layers: tuple[int, ...]  # the layer numbers (0-based) in ``weights``
    num_layers: int
    num_heads: int
    causal: bool
    previous_token_head: HeadPick | None  # None for a one-token text
    first_token_head: HeadPick | None
    previous_token_scores: np.ndarray  # (num_layers, heads): mean of A[i, i-1] over i >= 1
    first_token_scores: np.ndarray  # (num_layers, heads): mean of A[i, 0] over i >= 1

    def head(self, layer: int, head: int) -> np.ndarray:
        """The (T, T) map of ``layer`` (a model layer number) and ``head``."""
        if layer not in self.layers:
            raise InvalidOptionsError(f"Layer {layer} is not in these maps; they hold layers {list(self.layers)}.")
        if not 0 <= head < self.num_heads:
            raise InvalidOptionsError(f"Head {head} does not exist: the model has heads 0 to {self.num_heads - 1}.")
        return self.weights[self.layers.index(layer), head]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: the tokens, the picked heads, and the maps as nested lists (rounded to 4 places)."""
        pick = lambda p: dataclasses.asdict(p) if p else None  # noqa: E731
        return {"model": self.model, "tokens": list(self.tokens), "token_ids": list(self.token_ids),
                "layers": list(self.layers), "num_layers": self.num_layers, "num_heads": self.num_heads,
                "causal": self.causal, "previous_token_head": pick(self.previous_token_head),
                "first_token_head": pick(self.first_token_head),
                "weights": np.round(self.weights.astype(np.float64), 4).tolist()}


def head_scores(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For attention weights (layers, heads, T, T): each head's mean attention to the previous token and to the first
    token, over the positions that have one (i >= 1). Both (layers, heads); zeros for T = 1."""
    t = weights.shape[-1]
    if t < 2:
        zeros = np.zeros(weights.shape[:2], dtype=np.float64)
        return zeros, zeros
    rows = np.arange(1, t)
    w = weights.astype(np.float64)
    return w[:, :, rows, rows - 1].mean(-1), w[:, :, rows, 0].mean(-1)


def _best(scores: np.ndarray) -> HeadPick:
    layer, head = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return HeadPick(int(layer), int(head), float(scores[layer, head]))


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted: the printable character that stands for each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


BYTE_DECODER = _byte_decoder()


def token_text(tokenizer: Any, token_id: int) -> str:
    """One token as a label: its text when it decodes to whole characters, else its bytes (``‹E6 88›``)."""
    text = tokenizer.decode([token_id])
    if text and "\ufffd" not in text:
        return text
    raw = tokenizer.convert_ids_to_tokens(token_id)
    if raw and all(ch in BYTE_DECODER for ch in raw):  # byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen)
        data = bytes(BYTE_DECODER[ch] for ch in raw)
        space = "␣" if data.startswith(b" ") else ""
        return space + "‹" + " ".join(f"{b:02X}" for b in data.lstrip(b" ")) + "›"
    return raw or text


class AttentionModel:
    """A model loaded with eager attention, serving attention-map requests (one text per forward pass)."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.spec, self.device = spec, device
        self.causal = spec.task == "text-generation"
        self.tokenizer = load_tokenizer(folder)
        # The base model (no task head) is enough: attention is all in the body. Eager attention builds the matrix.
        self.model = pretrained("AutoModel", folder, dtype, attn_implementation="eager").to(device).eval()
        self.nbytes = module_nbytes(self.model)
        config = self.model.config
        self.num_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layers", 0)
                              or getattr(config, "n_layer", 0))
        limits = [getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None)]
        self.context = min([int(n) for n in limits if n] or [MAX_TOKENS])

    def batch_key(self, payload: Any) -> Hashable:
        return None

    def token_texts(self, ids: list[int]) -> tuple[str, ...]:
        """Each token as the text it stands for; a piece of a multi-byte character (byte-level BPE splits Chinese
        into such pieces) shows as its bytes, e.g. ``‹E6 88›``, with ``␣`` for a leading space."""
        return tuple(token_text(self.tokenizer, token_id) for token_id in ids)

    def run_batch(self, requests: list[Request]) -> None:
        for request in requests:  # texts of different lengths: one forward pass each, no padding in the maps
            if request.cancelled:
                request.fail(CancelledError("Cancelled."))
                continue
            try:
                request.finish(self._maps(request.payload))
            except Exception as e:  # this request's error; the next one is served
                request.fail(e)

    def _maps(self, payload: "AttentionPayload") -> AttentionMaps:
        ids = self.tokenizer(payload.text)["input_ids"]
        if not ids:
            raise InvalidInputError("The text gave no tokens to read; type some text.")
        limit = min(MAX_TOKENS, self.context)
        if len(ids) > limit:
            raise InputTooLargeError(f"Attention maps are for short texts: at most {limit} tokens, and this one has "
                                     f"{len(ids)}. Shorten it to a sentence or two.")
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise InvalidOptionsError(f"{self.spec.name} did not return its attention weights.")
        # attentions: one (1, heads, T, T) per layer
        weights = torch.stack([a[0].float() for a in out.attentions]).cpu().numpy()
        previous, first = head_scores(weights)
        layers = tuple(range(weights.shape[0]))
        if payload.layer is not None:
            if not 0 <= payload.layer < weights.shape[0]:
                raise InvalidOptionsError(f"Layer {payload.layer} does not exist: {self.spec.name} has layers 0 to "
                                          f"{weights.shape[0] - 1}.")
            layers = (payload.layer,)
        name = self.spec.name.removesuffix(SUFFIX)
        return AttentionMaps(name, payload.text, self.token_texts(ids), tuple(ids),
                             np.ascontiguousarray(weights[list(layers)]), layers, weights.shape[0], weights.shape[1],
                             self.causal, _best(previous) if len(ids) > 1 else None,
                             _best(first) if len(ids) > 1 else None, previous, first)


@dataclasses.dataclass(frozen=True)
class AttentionPayload:
    text: str
    layer: int | None


def attention_spec(spec: ModelSpec) -> ModelSpec:
    """The registry entry of ``spec``'s eager-attention copy: the same weights, served by this module."""
    if spec.family not in SUPPORTED:
        kinds = ", ".join(SUPPORTED)
        raise InvalidOptionsError(f"Attention maps are shown for models that read text with self-attention "
                                  f"({kinds}); {spec.name} is a {spec.family} model. Pick a text generation, "
                                  "question answering, sentiment or embedding model.")
    return dataclasses.replace(spec, name=spec.name + SUFFIX, family=FAMILY, default=False,
                               description=f"{spec.name} loaded with eager attention, for attention maps.")


def load(spec: ModelSpec, files: Path, engine: "Engine") -> AttentionModel:
    return AttentionModel(spec, files, engine.policy.device, engine.policy.dtype)


def _model_spec(engine: "Engine", model: str | None) -> ModelSpec:
    """A registered model by name, of any task; the text generation default when empty."""
    if not model:
        return engine.spec("text-generation")
    return engine.registry.get(model)


def attention(engine: "Engine", text: str, model: str | None = None, layer: int | None = None) -> AttentionMaps:
    """Attention maps of ``model`` (a registered name of any text task; the text generation default when empty) over
    ``text``: every layer's (or only ``layer``'s) heads, the tokens, and the heads that attend most to the previous
    and to the first token. The model is loaded once more with eager attention (see the module docstring)."""
    check_text(text, "text", engine.settings.max_chars)
    if layer is not None:
        if isinstance(layer, float) and layer.is_integer():
            layer = int(layer)
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise InvalidOptionsError(f"layer must be a whole number (or empty for every layer), got {layer!r}.")
    spec = attention_spec(_model_spec(engine, model))
    loaded = engine.models.get(spec)
    return loaded.worker.submit(AttentionPayload(text, layer)).result()
