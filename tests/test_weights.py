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
from engine.weights import (INT4_GROUP, BF16Linear, Int4Linear, Int8Linear, OneDNNLinear, PackedLinear,
                            apply_weights, bf16_packing_available, bytes_per_token, fuse_parts, onednn_available,
                            packing_available, quantize_int4, quantize_int8, resolve_weights)

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


@pytest.mark.parametrize("layer,rows", [(Int8Linear, 3), (Int8Linear, 40), (Int4Linear, 3), (Int4Linear, 40)])
def test_packed_layers_match_the_dequantized_product_within_bf16_rounding(layer, rows) -> None:
    """Against float64 on the same rounded weights: the only other error is bf16 (activations in, result out,
    the scales), bounded by a few units of roundoff of sum |x| |w| over the reduction. With many rows (a prefill)
    int8 takes another path on CPUs with bf16 units (INT8_DEQUANT_ROWS), held to the same bound."""
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(128, 80, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(80, 128, generator=g))
        linear.bias.copy_(torch.randn(80, generator=g))
    x = torch.randn(2, rows, 128, generator=g)
    if layer is Int8Linear:
        q, scales = quantize_int8(linear.weight)
        w = q.double() * scales.double()[:, None]
    else:
        codes, s4, zeros = quantize_int4(linear.weight)
        w = ((codes.double().reshape(80, -1, INT4_GROUP) - 8) * s4.double()[..., None]
             + zeros.double()[..., None]).reshape(80, 128)
    packed = layer(linear)
    y = packed(x)
    assert y.shape == (2, rows, 80) and y.dtype == torch.float32
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


# --- fp32 weights packed once for oneDNN (engine.weights.PackedLinear, FusedPart) ---------------------------------
needs_packing = pytest.mark.skipif(not packing_available(), reason="this torch cannot pack weights for oneDNN")


@needs_packing
def test_packed_linear_gives_f_linear_at_any_batch() -> None:
    rng = torch.Generator().manual_seed(0)
    w, b = torch.randn(40, 24, generator=rng), torch.randn(40, generator=rng)
    packed = PackedLinear(w, b)
    assert packed.packed.layout == torch._mkldnn and torch.equal(packed.weight, w)  # a dense copy on demand
    for shape in ((24,), (1, 24), (8, 24), (3, 5, 24), (300, 24)):
        x = torch.randn(*shape, generator=rng)
        assert torch.allclose(packed(x), torch.nn.functional.linear(x, w, b), atol=1e-5, rtol=1e-5), shape


@needs_packing
def test_fused_parts_compute_the_fused_product_once_per_input() -> None:
    rng = torch.Generator().manual_seed(1)
    layers = [torch.nn.Linear(16, n, bias=False) for n in (8, 4, 4)]
    fused = PackedLinear(torch.cat([lin.weight for lin in layers]))
    calls = []
    fused.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    parts = fuse_parts(fused, [8, 4, 4])
    x, y = torch.randn(3, 16, generator=rng), torch.randn(3, 16, generator=rng)
    with torch.no_grad():
        for part, lin in zip(parts, layers):  # q, k, v on one hidden state: one product
            assert torch.allclose(part(x), lin(x), atol=1e-5)
        assert len(calls) == 1 and parts[0]._group[0] is None  # every part served: the group let go of x
        assert torch.allclose(parts[1](y), layers[1](y), atol=1e-5)  # another input: computed for it
        assert torch.allclose(parts[1](y), layers[1](y), atol=1e-5)  # the same part twice: computed again
        assert torch.allclose(parts[0](x), layers[0](x), atol=1e-5) and len(calls) == 4
    assert torch.equal(parts[2].weight, layers[2].weight.detach())


@needs_packing
def test_fp32_llama_on_the_cpu_decodes_through_packed_weights_stored_once(tiny_causal_lm) -> None:
    """The served fp32 Llama's step and transformers' own forward pass (prefill) read the same packed tensors: no
    plain copy of a Linear weight is left, the bytes held are the model's (plus a packed copy of the tied output
    layer), and the prefill's logits are the plain model's."""
    from transformers import AutoModelForCausalLM

    from engine.cache import module_nbytes
    from engine.tasks.generation import CausalLM
    from engine.weights import FusedPart

    spec = ModelSpec("tiny", "text-generation", "causal-lm", f"path:{tiny_causal_lm}")
    served = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, dtype=torch.float32).eval()
    layer = served.model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, FusedPart) and isinstance(layer.mlp.up_proj, FusedPart)
    assert layer.self_attn.q_proj.fused is served.decoder.layers[0]["qkv"]
    assert isinstance(layer.self_attn.o_proj, PackedLinear) and served.decoder.layers[0]["o"] is layer.self_attn.o_proj
    assert not any(isinstance(m, torch.nn.Linear) for m in served.model.model.layers.modules())
    tied = plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()
    head = plain.lm_head.weight.numel() * 4 if tied else 0
    assert served.nbytes == module_nbytes(plain) + head
    assert bytes_per_token(served.model) == bytes_per_token(plain)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.inference_mode():
        got, want = served.model(input_ids=ids).logits, plain(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def _greedy_steps(served, prompts: list[list[int]], steps: int) -> list[list[int]]:
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache(config=served.model.config)
        logits, mask, positions = served._prefill(prompts, cache)
        tokens = []
        for _ in range(steps):
            nxt = logits.argmax(-1)
            tokens.append(nxt.tolist())
            mask = torch.cat([mask, mask.new_ones((len(prompts), 1))], dim=1)
            positions = positions + 1
            logits = served._forward(nxt[:, None], mask, positions[:, None], cache, step=True)
    return tokens


def test_fp32_llama_without_packing_decodes_the_same(tiny_causal_lm, monkeypatch) -> None:
    """Where this torch cannot pack weights for oneDNN, fp32 generation keeps the plain layers (the model's own q/k/v
    views into the step's fused weights) and decodes the same greedy tokens, left-padded rows included."""
    from engine import weights
    from engine.tasks.generation import CausalLM
    from engine.weights import FusedPart

    spec = ModelSpec("tiny", "text-generation", "causal-lm", f"path:{tiny_causal_lm}")
    monkeypatch.setattr(weights, "packing_available", lambda: False)
    plain = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32)
    monkeypatch.undo()
    packed = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32)
    assert not isinstance(plain.model.model.layers[0].self_attn.q_proj, FusedPart)
    assert isinstance(packed.model.model.layers[0].self_attn.q_proj, FusedPart) == packing_available()
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]
    assert _greedy_steps(plain, prompts, 12) == _greedy_steps(packed, prompts, 12)


# --- bf16 weights packed once for oneDNN (BF16Linear(packed=True)), reduced weights held once ----------------------
needs_bf16_packing = pytest.mark.skipif(not bf16_packing_available(),
                                        reason="no bf16 units on this CPU, or this torch cannot pack bf16 weights")


@needs_bf16_packing
def test_packed_bf16_linear_gives_the_bf16_product_at_any_batch() -> None:
    """The packed layer computes what the plain bf16 layer does (both round the inputs and weights to bf16 and
    accumulate in fp32), within bf16 rounding of the result, at every number of rows."""
    rng = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(96, 40)
    packed, plain = BF16Linear(linear, packed=True), BF16Linear(linear)
    assert packed.weight.layout == torch._mkldnn and plain.weight.layout == torch.strided
    for shape in ((96,), (1, 96), (8, 96), (3, 5, 96), (300, 96)):
        x = torch.randn(*shape, generator=rng)
        got, want = packed(x), plain(x)
        assert got.shape == want.shape and got.dtype == torch.float32
        scale = x.abs() @ linear.weight.detach().abs().T + linear.bias.detach().abs()
        assert ((got - want).abs() <= 2 * BF16_EPS * scale + 1e-6).all(), shape


def test_apply_weights_packs_the_int_settings_output_layer_in_bf16_only_when_asked(tiny_causal_lm) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm, dtype=torch.float32).eval()
    for weights in ("int8", "int4"):
        m = copy.deepcopy(model)
        apply_weights(m, weights)
        assert isinstance(m.lm_head, Int8Linear)
        if bf16_packing_available():
            m = copy.deepcopy(model)
            apply_weights(m, weights, pack=True)
            assert isinstance(m.lm_head, BF16Linear) and m.lm_head.packed
            layers = [mod for name, mod in m.named_modules() if name.endswith("q_proj")]
            assert layers and all(type(mod) is (Int8Linear if weights == "int8" else Int4Linear) for mod in layers)


@pytest.mark.parametrize("weights", ["bf16", "int8", "int4"])
def test_reduced_weights_are_held_once_and_the_step_agrees_with_the_forward_pass(tiny_causal_lm, weights) -> None:
    """At bf16, int8 and int4 the model's own q/k/v and gate/up layers are parts of the step's fused layers (one
    converted copy), the output layer is packed bf16 where the CPU has bf16 units, and a decoding step's logits are
    those of transformers' forward pass over the whole sequence through the same layers."""
    from engine.tasks.generation import CausalLM
    from engine.weights import FusedPart

    spec = ModelSpec("tiny", "text-generation", "causal-lm", f"path:{tiny_causal_lm}")
    served = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32, weights=weights)
    layer, entry = served.model.model.layers[0], served.decoder.layers[0]
    assert isinstance(layer.self_attn.k_proj, FusedPart) and layer.self_attn.k_proj.fused is entry["qkv"]
    assert isinstance(layer.mlp.gate_proj, FusedPart) and layer.mlp.gate_proj.fused is entry["gate_up"]
    assert served.decoder.extra_nbytes(served.model) == 0
    head = served.model.lm_head
    assert served.decoder.lm_head is head
    if bf16_packing_available():
        assert isinstance(head, BF16Linear) and head.packed
    else:
        assert isinstance(head, BF16Linear if weights == "bf16" else Int8Linear)
    from transformers import DynamicCache

    prompt = [5, 6, 7, 8, 9, 10, 11]
    with torch.inference_mode():
        cache = DynamicCache(config=served.model.config)
        logits, mask, positions = served._prefill([prompt], cache)
        token = logits.argmax(-1)
        mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
        step = served._forward(token[:, None], mask, positions[:, None] + 1, cache, step=True)
        whole = served.model(input_ids=torch.tensor([prompt + token.tolist()])).logits[:, -1].float()
    assert torch.allclose(step, whole, atol=0.02 * whole.abs().max().item(), rtol=0)


def _first_step(served, rows: int, prompts: list[list[int]] | None = None,
                ids: torch.Tensor | None = None) -> torch.Tensor:
    """The logits of the first decoding step after prefilling ``rows`` short prompts (or ``prompts``), with ``ids``
    as the new tokens (default: the greedy ones fed back)."""
    from transformers import DynamicCache

    prompts = prompts or [[5 + i, 6, 7, 8] for i in range(rows)]
    with torch.inference_mode():
        cache = DynamicCache(config=served.model.config)
        logits, mask, positions = served._prefill(prompts, cache)
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
        ids = logits.argmax(-1) if ids is None else ids
        return served._forward(ids[:, None], mask, positions[:, None] + 1, cache, step=True)


def test_compiled_int8_step_takes_a_batch_past_the_prefill_threshold(tiny_causal_lm) -> None:
    """An int8 step of INT8_DEQUANT_ROWS rows or more (another product path on CPUs with bf16 units) compiles too,
    and gives the eager step's logits within bf16 rounding: the path is chosen when a layer is made, not by
    reading the CPU's flags inside the traced function."""
    from engine.tasks.generation import CausalLM
    from engine.weights import INT8_DEQUANT_ROWS

    spec = ModelSpec("tiny", "text-generation", "causal-lm", f"path:{tiny_causal_lm}")
    compiled = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32, weights="int8", compile=True)
    eager = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32, weights="int8")
    assert compiled.decoder._compiled is not None
    rows = INT8_DEQUANT_ROWS + 1
    outputs = [_first_step(served, rows) for served in (compiled, eager)]
    assert outputs[0].shape == (rows, eager.vocab_size)
    assert torch.allclose(outputs[0], outputs[1], atol=0.02 * outputs[1].abs().max().item(), rtol=0)


def test_max_autotune_step_gives_the_eager_steps_logits(tiny_causal_lm) -> None:
    """``compile="max-autotune"`` (inductor's own products timed against ATen's, the weights folded in as constants):
    at int8 and fp32, a batch-1 and a batch-3 step give the eager step's logits within the precision's rounding, and
    so does a batch run through the graph a few rows at a time; the setting is parsed, and anything else is refused
    with the choices."""
    from engine.config import compile_mode
    from engine.tasks.generation import CausalLM

    assert compile_mode("max-autotune") == "max-autotune" and compile_mode("1") is True and compile_mode("off") is False
    with pytest.raises(InvalidOptionsError, match="max-autotune"):
        compile_mode("fastest")
    spec = ModelSpec("tiny", "text-generation", "causal-lm", f"path:{tiny_causal_lm}")
    for weights, tol in (("int8", 0.02), ("fp32", 1e-4)):
        compiled = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32, weights=weights, compile="max-autotune")
        eager = CausalLM(spec, tiny_causal_lm, "cpu", torch.float32, weights=weights)
        assert compiled.decoder._compiled is not None and compiled.compile_seconds > 0
        if weights == "fp32" and onednn_available():
            # the step's products are plain Linear layers, which inductor tunes (an opaque oneDNN product would be
            # left out), on the tensors of the model's own oneDNN layers, which the prefill still uses
            step, layer = compiled.decoder.layers[0], compiled.model.model.layers[0]
            assert all(type(step[n]) is torch.nn.Linear for n in ("qkv", "gate_up", "o", "down"))
            assert type(compiled.decoder.lm_head) is torch.nn.Linear
            assert type(layer.mlp.down_proj) is OneDNNLinear
            assert step["down"].weight.data_ptr() == layer.mlp.down_proj.weight.data_ptr()
        for rows in (1, 3):
            outputs = [_first_step(served, rows) for served in (compiled, eager)]
            scale = outputs[1].abs().max().item()
            assert torch.allclose(outputs[0], outputs[1], atol=tol * scale, rtol=0), (weights, rows)
        # the batch through the graph a few rows at a time (what compile() chooses where that measured faster):
        # 5 rows of different prompts and lengths (padding) and new tokens, as 2 + 2 + 1, the last through the
        # batch-1 graph: the same logits, row for row
        assert compiled.decoder.chunk in (None, 4)
        compiled.decoder.chunk = 2
        prompts, ids = [[5 + i, 9 + 3 * i, 7 + i][:1 + i % 3] for i in range(5)], torch.tensor([11, 3, 17, 8, 21])
        outputs = [_first_step(served, 5, prompts, ids) for served in (compiled, eager)]
        assert torch.allclose(outputs[0], outputs[1], atol=tol * outputs[1].abs().max().item(), rtol=0), weights
