"""Reduced-precision weights (engine/weights.py): the setting, the packed layers' error within a bound derived from
their rounding, and text generation served with each setting. Agreement on the real SmolLM2 (perplexity) is
measured by bench/generation_weights.py, not here."""
from __future__ import annotations

import copy

import pytest
import torch

from engine import Engine, Settings
from engine.errors import InvalidOptionsError
from engine.registry import ModelSpec, Registry
from engine.weights import (INT4_GROUP, Int4Linear, Int8Linear, apply_weights, bytes_per_token, quantize_int4,
                            quantize_int8, resolve_weights)

BF16_EPS = 2.0**-8  # bfloat16's unit roundoff (8 significant bits)


def test_setting_from_the_environment_and_refused_when_unknown() -> None:
    assert Settings.from_env({"LLM_LAB_WEIGHTS": "INT8"}).weights == "int8"
    assert Settings.from_env({}, weights="bfloat16").weights == "bf16"
    assert Settings().weights == "auto"
    with pytest.raises(InvalidOptionsError, match="auto, fp32, bf16, int8, int4"):
        Settings(weights="int3")


def test_auto_is_exact_on_the_cpu_and_packed_kernels_are_cpu_only() -> None:
    assert resolve_weights("auto", "cpu") == "fp32" and resolve_weights("auto", "cuda") == "bf16"
    assert resolve_weights("int4", "cpu") == "int4"
    with pytest.raises(InvalidOptionsError, match="CPU only.*bf16"):
        resolve_weights("int8", "cuda")


def test_quantizers_round_within_half_a_step() -> None:
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(0))
    q, scales = quantize_int8(w)
    assert q.dtype == torch.int8 and (q.float() * scales[:, None] - w).abs().le(scales[:, None] / 2 * 1.0001).all()
    codes, s4, zeros = quantize_int4(w)
    assert codes.min() >= 0 and codes.max() <= 15
    back = ((codes.float().reshape(48, -1, INT4_GROUP) - 8) * s4[..., None] + zeros[..., None]).reshape(48, 96)
    assert (back - w).abs().le(s4.repeat_interleave(INT4_GROUP, dim=1) / 2 * 1.0001).all()


@pytest.mark.parametrize("layer", [Int8Linear, Int4Linear])
def test_packed_layers_match_the_dequantized_product_within_bf16_rounding(layer) -> None:
    """Against float64 on the same rounded weights: the only other error is bf16 (activations in, result out,
    the scales), bounded by a few units of roundoff of sum |x| |w| over the reduction."""
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(128, 80, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(80, 128, generator=g))
        linear.bias.copy_(torch.randn(80, generator=g))
    x = torch.randn(2, 3, 128, generator=g)
    if layer is Int8Linear:
        q, scales = quantize_int8(linear.weight)
        w = q.double() * scales.double()[:, None]
    else:
        codes, s4, zeros = quantize_int4(linear.weight)
        w = ((codes.double().reshape(80, -1, INT4_GROUP) - 8) * s4.double()[..., None]
             + zeros.double()[..., None]).reshape(80, 128)
    packed = layer(linear)
    y = packed(x)
    assert y.shape == (2, 3, 80) and y.dtype == torch.float32
    exact = x.double() @ w.T + linear.bias.double()
    scale = x.double().abs() @ w.abs().T + linear.bias.double().abs()
    assert ((y.double() - exact).abs() <= 4 * BF16_EPS * scale).all()


def test_apply_weights_replaces_linears_and_reads_fewer_bytes(tiny_causal_lm) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, dtype=torch.float32).eval()
    fp32 = bytes_per_token(model)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
    sizes = {}
    for weights in ("bf16", "int8", "int4"):
        m = copy.deepcopy(model)
        replaced = apply_weights(m, weights)
        assert replaced > 0 and not any(type(mod) is torch.nn.Linear for mod in m.modules())
        sizes[weights] = bytes_per_token(m)
        with torch.inference_mode():
            out = m(input_ids=ids).logits
        assert out.shape == ref.shape and torch.isfinite(out).all()
    assert isinstance(m.lm_head, Int8Linear)  # int4 keeps the output layer in int8
    assert fp32 > sizes["bf16"] > sizes["int8"] > sizes["int4"]


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_generation_serves_reduced_weights(tiny_causal_lm, weights) -> None:
    spec = ModelSpec("tiny-chat", "text-generation", "causal-lm", f"path:{tiny_causal_lm}", chat=True)
    registry = Registry()
    registry.add(spec)
    engine = Engine(Settings(device="cpu", dtype="float32", weights=weights, offline=True), registry)
    try:
        served = engine.served("text-generation", "tiny-chat")
        assert served.weights == weights
        result = engine.generate("Hello there", model="tiny-chat", max_new_tokens=6, temperature=0)
        assert result.tokens and result.finish_reason in ("length", "eos")
        assert all(0 <= t.prob <= 1 for t in result.tokens)
    finally:
        engine.close()
