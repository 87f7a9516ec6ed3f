"""Sampling, as pure functions of the logits: no model, no state, no device of their own.

The next-token distribution is reshaped in a fixed order: repetition penalty on the logits, then temperature, then
top-k, then top-p, then renormalised. Greedy decoding (temperature 0) is the argmax. A draw takes one uniform number
per row from that row's own CPU ``torch.Generator`` and picks the token where the cumulative distribution passes it,
so a seed gives the same tokens on any device and whatever else shares the batch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from .generation import GenerationOptions

LOG2E = 1 / math.log(2)  # nats -> bits


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Make tokens already seen less likely (CTRL's rule, as in transformers): positive logits are divided by the
    penalty, negative ones multiplied. ``logits`` (B, V) float, ``seen`` (B, V) bool, ``penalty`` (B, 1)."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def shape_distribution(logits: torch.Tensor, temperature: float, top_k: int,
                       top_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampling distribution after temperature, top-k and top-p, over candidate tokens.

    ``logits`` (B, V) float. Returns ``(probs, ids)``: ``probs`` (B, K) sums to 1 per row over the candidates,
    ``ids`` (B, K) their token ids, best first; ``ids`` is None when every token is a candidate (K = V, in order).
    """
    if temperature == 0:  # greedy: all the mass on the most likely token
        ids = logits.argmax(-1, keepdim=True)
        return torch.ones_like(ids, dtype=logits.dtype), ids
    vocab = logits.shape[-1]
    ids = None
    if 0 < top_k < vocab:
        logits, ids = logits.topk(top_k, dim=-1)  # sorted, best first
    elif top_p < 1:
        logits, ids = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:  # keep the best tokens until their mass reaches top_p (the first one always stays)
        before = probs.cumsum(-1) - probs  # mass of the better tokens
        probs = probs.masked_fill(before >= top_p, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs, ids


def sample_next_token(logits: torch.Tensor, options: GenerationOptions,
                      generators: torch.Generator | Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
    """Pick the next token of each row: ``logits`` (B, V) or (V,) -> token ids (B,) or ().

    Greedy (the argmax) when ``options.temperature`` is 0. Otherwise each row draws one uniform number from its own
    CPU generator (``generators``: one per row, or one for all) and takes the token where the cumulative reshaped
    distribution passes it: the same seed gives the same draw on any device and in any batch.
    """
    squeeze = logits.dim() == 1
    logits = logits.float().reshape(-1, logits.shape[-1])
    if options.temperature == 0:
        tokens = logits.argmax(-1)
        return tokens[0] if squeeze else tokens
    probs, ids = shape_distribution(logits, options.temperature, options.top_k, options.top_p)
    rows = logits.shape[0]
    gens = list(generators) if isinstance(generators, (list, tuple)) else [generators] * rows
    uniforms = torch.tensor([torch.rand(1, generator=g).item() for g in gens], dtype=probs.dtype)
    cdf = probs.cumsum(-1)
    # u * total rather than u: the cumulative sum of a float32 row may end a hair below 1
    pick = torch.searchsorted(cdf, (uniforms.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)).clamp_(max=cdf.shape[-1] - 1)
    tokens = (pick if ids is None else ids.gather(-1, pick)).squeeze(-1)
    return tokens[0] if squeeze else tokens


def reshaped_distribution(logits: torch.Tensor, options: GenerationOptions) -> torch.Tensor:
    """The full-vocabulary sampling distribution (B, V) that :func:`sample_next_token` draws from: float32, or
    float64 for float64 ``logits`` (the next-token lens, whose distributions must sum to 1 on every machine)."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    probs, ids = shape_distribution(logits, options.temperature, options.top_k, options.top_p)
    return probs if ids is None else torch.zeros_like(logits).scatter_(-1, ids, probs)


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of distributions given as log-probabilities (B, V) -> (B,)."""
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1) * LOG2E


def log_normaliser_and_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the distributions softmax(``logits``) (B, V): the log of each row's normaliser (B, 1), so that a token's
    log-probability is its logit minus it, and the entropy in bits (B,), without the (B, V) log-probabilities.

    With ``z = logits - max`` and ``e = exp(z)``: log-normaliser ``max + log(sum e)``, entropy
    ``log(sum e) - sum(e * z) / sum e``. Five passes over the logits where log_softmax and then the entropy of its
    result took eight, each allocating (B, V): at every decoding step, for SmolLM2's 49,152 tokens."""
    top = logits.amax(-1, keepdim=True)
    z = logits - top
    e = z.exp()
    total = e.sum(-1, keepdim=True)
    log_total = total.log()
    # (a -inf logit has e = 0: clamped, its term is 0 * finite, not 0 * -inf = nan)
    entropy = (log_total - (e * z.clamp_(min=torch.finfo(z.dtype).min)).sum(-1, keepdim=True) / total) * LOG2E
    return top + log_total, entropy.squeeze(-1)

