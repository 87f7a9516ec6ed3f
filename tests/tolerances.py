"""Tolerances for the suite's numeric assertions, derived from the dtype and the size of the reduction, in one place.

Floating-point results depend on the order of each reduction, and that order is the kernel's choice: 8 lanes with
AVX2, 16 with AVX-512, tiles with AMX, a tree on a GPU. A tolerance that was tuned until it passed on one machine can
fail on the next (issue 16: a float32 softmax over SmolLM2's 49,152 tokens summed to 1 + 2.0e-5 on an AVX2-only
EPYC, past a tolerance of 1e-5 that held with AVX-512). So every tolerance here is a bound that holds for ANY
summation order:

- exact claims (a distribution sums to 1, a lens is the softmax of the logits) are checked in float64, where the
  bound is around 1e-12 and tight;
- claims that compare two float32 evaluations of the same network (engine against a plain reference, batched against
  alone) use :func:`forward_atol`, a bound on the logits' rounding error from float32's epsilon and the length and
  number of the reductions behind each logit, and compare probabilities through it (:func:`assert_probs_close`);
- identity claims (greedy tokens, labels, spans) stay identities and need nothing from here.

u is the unit roundoff (half of ``torch.finfo(dtype).eps``): 2**-24 for float32, 2**-53 for float64.
"""
from __future__ import annotations

import math

import numpy as np
import torch

LAMBDA = 6.0  # the probabilistic bound's multiplier (see forward_atol)


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    """u: the largest relative error of one correctly rounded operation in ``dtype``."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's gamma_n = n u / (1 - n u): a sum (or dot product) of n + 1 terms computed in ``dtype`` in any order
    (sequential, pairwise, SIMD lanes, a GPU tree) is within gamma_n * sum |terms| of the exact sum. Worst case."""
    nu = n * unit_roundoff(dtype)
    assert nu < 1, f"{n} terms are too many for a bound in {dtype}"
    return nu / (1 - nu)


def softmax_sum_tol(n: int, dtype: torch.dtype = torch.float32) -> float:
    """How far from 1 the n probabilities of a softmax computed in ``dtype`` may sum (the sum itself taken in float64,
    exactly enough). The normaliser sum(exp(x_i - max)) is a sum of n positive terms: relative error gamma_{n-1}, in
    any order. Each p_i then carries a few roundings of its own (the subtraction of the max, exp within one ulp, the
    division, or for exp(log_softmax) the rounding of log p_i, which costs u |log p_i|): weighted by p_i these add
    at most (4 ln n + 4) u, as sum p_i |log p_i| (the entropy) is at most ln n. Worst case, any kernel."""
    return gamma(n - 1, dtype) + (4 * math.log(n) + 4) * unit_roundoff(dtype)


def forward_atol(scale: float, reduction: int, layers: int, dtype: torch.dtype = torch.float32) -> float:
    """A bound on the absolute rounding error of one evaluation of a network's outputs (logits) in ``dtype``.

    Each output is reached through ``layers`` reductions of at most ``reduction`` terms (the longest dot product of
    a layer: its MLP width, or its attention length if longer), n = layers * reduction roundings in all. The worst
    case n u is far too pessimistic for n in the tens of thousands; rounding errors of different signs cancel, and
    Higham and Mary's probabilistic bound (SIAM J. Sci. Comput. 41(5), 2019) is LAMBDA sqrt(n) u relative to the size
    of the values, whatever the order, with probability at least 1 - 2n exp(-LAMBDA**2 / 2) under their model of
    independent rounding errors. ``scale`` is that size: the largest |output| of a reference evaluation. This models a
    deep network rather than proving a bound for it; measured on SmolLM2 (30 layers, MLP width 1536, logits up to 20)
    the engine's and a plain pass's logits differed by 4e-5 to 5e-5 with AVX-512, AVX2 and torch's scalar kernels,
    1/60 of the 3.1e-3 this allows for two evaluations.

    Two evaluations in different orders (another CPU, a batch instead of one row, a KV cache instead of a full pass)
    each lie within this of the exact result, so they differ by at most twice it.
    """
    return LAMBDA * math.sqrt(layers * reduction) * unit_roundoff(dtype) * max(scale, 1e-30)


def model_forward_atol(config, scale: float, length: int = 0, dtype: torch.dtype = torch.float32) -> float:
    """:func:`forward_atol` of a transformers model from its config: ``length`` tokens of attention."""
    width = max(getattr(config, name, 0) or 0 for name in ("intermediate_size", "hidden_dim", "n_inner", "ffn_dim",
                                                            "encoder_ffn_dim", "decoder_ffn_dim", "hidden_size",
                                                            "n_embd", "dim", "d_model"))
    width = max(width, 4 * (getattr(config, "n_embd", 0) or 0))  # GPT-2's MLP is 4 n_embd when n_inner is None
    layers = max(getattr(config, name, 0) or 0 for name in ("num_hidden_layers", "n_layer", "n_layers",
                                                             "encoder_layers"))
    layers += getattr(config, "decoder_layers", 0) or 0
    return forward_atol(scale, max(width, length), max(layers, 1) + 1, dtype)  # + 1: the output projection


def log_prob_tol(logit_atol: float, n: int, dtype: torch.dtype = torch.float32) -> float:
    """How far log p may move for one softmax over n outputs when every logit moves by at most ``logit_atol``:
    log p_i = x_i - logsumexp(x), and logsumexp moves by at most max |dx|, so log p moves by at most 2 max |dx|;
    plus the softmax's own rounding in ``dtype`` (relative, :func:`softmax_sum_tol`)."""
    return 2 * logit_atol + 2 * softmax_sum_tol(n, dtype)


def assert_probs_close(actual, expected, log_tol: float, *, what: str = "probabilities") -> None:
    """Two distributions agree within ``log_tol`` in log space, |log p - log q| <= log_tol for every entry: the
    form in which a perturbation of the logits bounds the error (relative), for large and tiny probabilities alike.
    Both are compared in float64; entries that are exactly 0 must be 0 in both."""
    p = np.asarray(actual, dtype=np.float64)
    q = np.asarray(expected, dtype=np.float64)
    assert p.shape == q.shape, (p.shape, q.shape)
    zero = (p == 0) | (q == 0)
    assert np.array_equal(p == 0, q == 0), f"{what}: zeros differ at {np.flatnonzero((p == 0) != (q == 0))[:5]}"
    gap = np.abs(np.log(p[~zero]) - np.log(q[~zero]))
    worst = float(gap.max(initial=0.0))
    assert worst <= log_tol, f"{what}: |log p - log q| reaches {worst:.3g} > {log_tol:.3g}"


def softmax64(logits) -> np.ndarray:
    """The softmax of ``logits`` computed in float64 (a reference that sums to 1 within ~1e-12)."""
    return torch.softmax(torch.as_tensor(logits).double(), -1).numpy()
