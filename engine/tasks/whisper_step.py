"""The decoding step of openai-whisper's text decoder, for ``whisper.decode`` on the CPU: the same arithmetic as
``TextDecoder.forward`` with its key/value cache, in fewer and cheaper operations.

``whisper.decode`` calls ``model.decoder(tokens, audio_features, kv_cache=...)`` once per token, and
openai-whisper's cache is a forward hook on every key and value projection that concatenates the whole cached tensor
with the new column (``torch.cat``, a fresh allocation per layer per step: a third of whisper-base's step time on
the benchmark's three windows), while cross-attention reads its 1,500 keys per window through a permuted view. This
step, installed as the decoder's ``forward`` when it is called with a cache (a call without one, such as language
detection, runs whisper's own forward pass, only with the vocabulary projection below):

- keeps self-attention keys and values in buffers of the model's whole text context (448 positions), heads first,
  so a step writes one column in place and attention reads a contiguous prefix;
- computes the cross-attention keys and values once per ``decode`` call, in one fused product (in the encoders'
  dtype, :attr:`DevicePolicy.encoder_dtype <engine.device.DevicePolicy>`: 1,500 rows per window are an encoder's
  work), and stores them heads first in fp32 for the attention kernel;
- runs the per-token products (q/k/v fused, the attention outputs, the MLP and the vocabulary projection) through
  whatever layers the model holds: oneDNN fp32 (its weights packed once for oneDNN where torch can, :func:`_pack`),
  or int8 weights (``--speech-weights``, :func:`quantize_decoder`), which read a quarter of the bytes; a step of
  whisper-base reads 190 MB at fp32, 106 MB of them the vocabulary.

Its state lives in the ``kv_cache`` dict whisper passes in, under whisper's own keys (the self-attention key and
value modules), so ``whisper.decode``'s bookkeeping (``cleanup_caching``, and ``rearrange_kv_cache`` for beam
search) keeps working. Logits equal whisper's own forward to float32 rounding at fp32 weights
(tests/test_speech.py).
"""
from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

from ..weights import (Int8Linear, OneDNNLinear, PackedLinear, _replace, onednn_available, onednn_linear, pack_fused,
                       quantize_int8)

__all__ = ["install", "quantize_decoder"]


class _State:
    """One ``decode`` call's caches: self-attention keys/values (layers, batch, heads, n_ctx, head_dim) filled up to
    ``length``, and cross-attention keys/values (layers, batch, heads, audio frames, head_dim).

    whisper's ``rearrange_kv_cache`` (beam search) does ``cache[m] = cache[m][rows].detach()`` for each
    self-attention key and value module ``m``: every one of them maps to this one state, which notes the rows and
    reorders its buffers once, at the next step."""

    def __init__(self, self_k: torch.Tensor, self_v: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
                 length: int = 0) -> None:
        self.self_k, self.self_v, self.cross_k, self.cross_v, self.length = self_k, self_v, cross_k, cross_v, length
        self.pending: Any = None

    def __getitem__(self, rows: Any) -> "_State":
        self.pending = rows
        return self

    def detach(self) -> "_State":
        return self

    def settle(self) -> None:
        """Apply a reordering of the rows noted by :meth:`__getitem__`."""
        if self.pending is None:
            return
        rows, self.pending = self.pending, None
        self.self_k, self.self_v = self.self_k[:, rows], self.self_v[:, rows]
        if self.cross_k.shape[1] > 1:  # one audio for every row (whisper's beam search over one window) stays
            self.cross_k, self.cross_v = self.cross_k[:, rows], self.cross_v[:, rows]


class _Step:
    """The per-model pieces of the step: fused self-attention q/k/v and cross-attention k/v products."""

    def __init__(self, decoder: Any, cross_dtype: torch.dtype) -> None:
        blocks = list(decoder.blocks)
        self.n_head = blocks[0].attn.n_head
        self.n_ctx = decoder.positional_embedding.shape[0]
        self.cross_dtype = cross_dtype
        # fp32 products through oneDNN where it works (engine.weights), else torch's own
        self.product = onednn_linear if cross_dtype == torch.float32 and onednn_available() else F.linear
        # the decoder's own self-attention q/k/v as one product per layer (whisper's key has no bias)
        self.qkv = [_fuse([b.attn.query, b.attn.key, b.attn.value]) for b in blocks]
        with torch.no_grad():  # cross keys/values: (2 * d, d) and bias, once per decode, in cross_dtype
            self.cross = [(torch.cat([_weight(b.cross_attn.key), _weight(b.cross_attn.value)]).to(cross_dtype),
                           torch.cat([torch.zeros_like(b.cross_attn.value.bias), b.cross_attn.value.bias])
                           .to(cross_dtype)) for b in blocks]
        self._memory: dict[str, torch.Tensor] = {}

    def workspace(self, name: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Two fp32 tensors of ``shape`` (keys and values), views into memory kept for the next call; it grows
        when a larger batch comes."""
        size = 2 * torch.Size(shape).numel()
        memory = self._memory.get(name)
        if memory is None or memory.numel() < size:
            memory = self._memory[name] = torch.empty(size, dtype=torch.float32)
        return memory[: size // 2].view(shape), memory[size // 2: size].view(shape)


def _weight(layer: Any) -> torch.Tensor:
    return layer.weight.detach()


def _fuse(layers: list[Any]) -> torch.nn.Module:
    """One product for several Linear layers of the same input (whisper's q, k and v): their rows stacked, biases
    missing in some (whisper's key) as zeros. Int8 layers stack their rows and per-row scales, which is exact; fp32
    ones their weights. The layers' own weights become views into the stacked ones, so nothing is stored twice."""
    with torch.no_grad():
        bias = torch.cat([layer.bias.detach().float() if layer.bias is not None
                          else torch.zeros(layer.out_features, dtype=torch.float32) for layer in layers])
        if all(isinstance(layer, Int8Linear) for layer in layers):
            fused = Int8Linear.from_rows(torch.cat([layer.weight for layer in layers]),
                                         torch.cat([layer.scales for layer in layers]), bias)
            parts = ("weight", "scales")
        else:
            plain = torch.nn.Linear(layers[0].in_features, sum(layer.out_features for layer in layers), device="meta")
            plain.weight = torch.nn.Parameter(torch.cat([_weight(layer).float() for layer in layers]),
                                              requires_grad=False)
            plain.bias = torch.nn.Parameter(bias, requires_grad=False)
            fused = OneDNNLinear(plain) if isinstance(layers[0], OneDNNLinear) else plain
            parts = ("weight",)
        row = 0
        for layer in layers:
            for part in parts:
                view = getattr(fused, part)[row: row + layer.out_features]
                setattr(layer, part, torch.nn.Parameter(view, requires_grad=False)
                        if isinstance(getattr(layer, part), torch.nn.Parameter) else view)
            row += layer.out_features
    return fused


def quantize_decoder(decoder: Any) -> int:
    """Every Linear layer of whisper's text decoder that runs once per token becomes an :class:`Int8Linear` (one
    int8 per weight, one scale per row; activations rounded to bf16 inside the kernel), and the vocabulary
    projection gets an int8 copy of the token embedding (the table itself stays fp32: it is read one row per token).
    The cross-attention key/value projections, run once per window over 1,500 frames, keep their weights. Returns
    how many layers were replaced."""
    replaced = 0
    with torch.no_grad():
        for name, module in list(decoder.named_modules()):
            if not isinstance(module, (torch.nn.Linear, OneDNNLinear)) or name.endswith(("cross_attn.key",
                                                                                          "cross_attn.value")):
                continue
            _replace(decoder, name, Int8Linear(module))
            replaced += 1
        decoder.vocabulary = Int8Linear.from_rows(*quantize_int8(decoder.token_embedding.weight))
    return replaced + 1


def install(decoder: Any, cross_dtype: torch.dtype = torch.float32, pack: bool = False) -> None:
    """Make ``decoder`` (a whisper ``TextDecoder`` on the CPU, its layers fp32, oneDNN or int8) run cached calls
    through this step, and every call's vocabulary projection through ``decoder.vocabulary``: the int8 copy of
    :func:`quantize_decoder`, else the embedding table itself as a (oneDNN) Linear layer (whisper computes it as
    ``x @ W.T``, which MKL runs on one thread for the few rows of a step). ``pack`` (oneDNN fp32 layers,
    :func:`~engine.weights.packing_available`): the per-token products through weights packed once for oneDNN
    instead (:func:`_pack`)."""
    if getattr(decoder, "vocabulary", None) is None:
        table = decoder.token_embedding.weight
        projection = torch.nn.Linear(table.shape[1], table.shape[0], bias=False, device="meta")
        projection.weight = table  # shared, not copied
        decoder.vocabulary = OneDNNLinear(projection) if onednn_available() else projection
    step = _Step(decoder, cross_dtype)
    if pack and all(isinstance(fused, OneDNNLinear) for fused in step.qkv):
        _pack(decoder, step)

    def forward(self: Any, x: torch.Tensor, xa: torch.Tensor, kv_cache: dict | None = None) -> torch.Tensor:
        if kv_cache is None:
            return _uncached(self, x, xa)
        modules = [b.attn.key for b in self.blocks] + [b.attn.value for b in self.blocks]
        state = kv_cache.get(modules[0])
        if state is None:  # whisper's own entries, so that its bookkeeping (beam search's reordering) finds them
            state = _start(self, step, xa, x.shape[0])
            kv_cache.update(dict.fromkeys(modules, state))
        state.settle()
        return _forward(self, step, state, x)

    decoder.forward = types.MethodType(forward, decoder)


def _pack(decoder: Any, step: _Step) -> None:
    """The decoder's per-token products through fp32 weights packed once for oneDNN
    (:class:`~engine.weights.PackedLinear`; with the plain layout oneDNN reorders the weight inside every product of
    more than one row, and a step here has one row per window or beam): the fused q/k/v (the self-attention's own
    query, key and value become its parts, :class:`~engine.weights.FusedPart`, for whisper's uncached calls), the
    attention outputs, the cross-attention queries and the MLP replaced by their packed form, nothing stored twice;
    the vocabulary projection gets a packed copy of the embedding table (the table is still read a row at a time).
    The cross-attention keys and values (once per window, 1,500 frames) keep their products."""
    with torch.no_grad():
        for i, block in enumerate(decoder.blocks):
            step.qkv[i] = pack_fused(step.qkv[i], block.attn, ("query", "key", "value"))
            for parent, name in ((block.attn, "out"), (block.cross_attn, "query"), (block.cross_attn, "out"),
                                 (block.mlp, "0"), (block.mlp, "2")):
                setattr(parent, name, PackedLinear.from_linear(getattr(parent, name)))
        decoder.vocabulary = PackedLinear(decoder.token_embedding.weight)


def _uncached(decoder: Any, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
    """whisper's own forward pass without a cache (language detection, word alignment), with the decoder's
    vocabulary layer."""
    h = decoder.token_embedding(x) + decoder.positional_embedding[: x.shape[-1]]
    for block in decoder.blocks:
        h = block(h, xa, mask=decoder.mask)
    return decoder.vocabulary(decoder.ln(h)).float()


def _start(decoder: Any, step: _Step, xa: torch.Tensor, rows: int) -> _State:
    """The caches of one decode call: self-attention buffers for ``rows`` sequences (nothing in them is read before
    this call writes it), and the cross-attention keys and values of ``xa`` (batch, frames, d) for every layer, heads
    first (a batch of one audio serves every row, as in whisper's own beam search over one window). The memory is
    the step's own, kept from one call to the next (a model serves one request at a time): fresh allocations of this
    size cost more in page faults than the products that fill them."""
    batch, frames, d = xa.shape
    layers, heads = len(step.qkv), step.n_head
    head_dim = d // heads
    self_k, self_v = step.workspace("self", (layers, rows, heads, step.n_ctx, head_dim))
    cross_k, cross_v = step.workspace("cross", (layers, batch, heads, frames, head_dim))
    audio = xa.to(step.cross_dtype)
    for i, (weight, bias) in enumerate(step.cross):
        kv = step.product(audio, weight, bias)  # (batch, frames, 2 d)
        kv = kv.view(batch, frames, 2, heads, head_dim).permute(2, 0, 3, 1, 4)  # (2, batch, heads, frames, hd)
        cross_k[i].copy_(kv[0])  # permuted and converted to fp32 in one pass
        cross_v[i].copy_(kv[1])
    return _State(self_k, self_v, cross_k, cross_v)


def _forward(decoder: Any, step: _Step, state: _State, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (batch, tokens, vocabulary) of ``tokens`` (batch, T) following the ``state.length`` cached ones."""
    batch, count = tokens.shape
    start, end = state.length, state.length + count
    if end > step.n_ctx:
        raise ValueError(f"whisper's text context holds {step.n_ctx} tokens; this decode reached {end}")
    heads = step.n_head
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[start:end]  # (batch, T, d)
    d = x.shape[-1]
    head_dim = d // heads
    mask = None
    if count > 1 and start > 0:  # new tokens after cached ones: each sees the cache and the new ones up to itself
        mask = torch.ones(count, end, dtype=torch.bool).tril(diagonal=start)
    for i, block in enumerate(decoder.blocks):
        q, k, v = step.qkv[i](block.attn_ln(x)).view(batch, count, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        state.self_k[i, :, :, start:end] = k
        state.self_v[i, :, :, start:end] = v
        a = F.scaled_dot_product_attention(q, state.self_k[i, :, :, :end], state.self_v[i, :, :, :end],
                                           attn_mask=mask, is_causal=count > 1 and start == 0)
        x = x + block.attn.out(a.transpose(1, 2).reshape(batch, count, d))
        q = block.cross_attn.query(block.cross_attn_ln(x)).view(batch, count, heads, head_dim).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, state.cross_k[i], state.cross_v[i])
        x = x + block.cross_attn.out(a.transpose(1, 2).reshape(batch, count, d))
        x = x + block.mlp(block.mlp_ln(x))
    state.length = end
    return decoder.vocabulary(decoder.ln(x)).float()
