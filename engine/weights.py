"""Reduced-precision weights for a model's Linear layers (weight-only), through torch's own packed kernels.

Decoding one token at a time reads every weight once per token, so its speed is the memory bandwidth over the
weights' bytes: fewer bytes per weight, more tokens per second. Four settings (``--weights``, ``LLM_LAB_WEIGHTS``):

- ``fp32``: the weights as they are (exact; the baseline every other setting is judged against);
- ``bf16``: Linear weights stored in bfloat16, each product computed in bfloat16 and returned in the model's dtype
  (half the bytes; norms, softmax and the cache stay in fp32);
- ``int8``: one int8 per weight and one scale per output row (symmetric, round to nearest), multiplied by
  ``torch.ops.aten._weight_int8pack_mm`` (a quarter of the bytes);
- ``int4``: 4 bits per weight in groups of :data:`INT4_GROUP` along the input, each group with its own scale and
  offset, through ``_weight_int4pack_mm_for_cpu`` (an eighth, plus the groups' scales).

The output layer (``lm_head``) of the int8 and int4 settings is bf16 packed once for oneDNN on a CPU with bf16 units
(:func:`bf16_packing_available`), int8 elsewhere; never int4, as llama.cpp's Q4 files keep theirs at higher
precision: all-int4 SmolLM2 lost 6.8% perplexity. bf16 weights are packed the same way where they can be.

The packed kernels take bf16 activations: with fp32 ones torch's int8 kernel ran 4x slower than the fp32 matmul on
the AVX-512 EPYC of bench/README.md, with bf16 ones 2x faster, so the activations are rounded to bf16 on the way in.
The output projection of a model with tied embeddings gets a quantized copy; the embedding table itself is only
read one row per token and stays as it is.

Agreement is measured, not assumed: bench/generation_weights.py prints the perplexity of the packaged SmolLM2 on
held-out text at each setting beside fp32, and the greedy continuations side by side. ``auto`` keeps fp32 on the CPU
(greedy text identical to the plain transformers model; the int8 and int4 figures are offered, not imposed) and
bf16 on a GPU (the engine's dtype there already).
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import torch

from .config import WEIGHTS, check_speech_weights, check_weights
from .errors import InvalidOptionsError

__all__ = ["WEIGHTS", "check_weights", "resolve_weights", "resolve_speech_weights", "apply_weights", "bytes_per_token",
           "BF16Linear", "Int8Linear", "Int4Linear", "OneDNNLinear", "WEIGHT_LAYERS", "onednn_available", "onednn_linear",
           "apply_onednn", "weight_layer", "quantize_int8", "quantize_int4", "PackedLinear", "FusedPart", "fuse_parts",
           "pack_fused", "share_fused", "packing_available", "bf16_packing_available", "packs", "tensor_key",
           "PACK_ROWS"]
log = logging.getLogger(__name__)

INT4_GROUP = 32  # weights per int4 scale and offset (llama.cpp's Q4 blocks hold 32 too)
INT4_INNER_TILES = 2  # the packing's inner k tiles (the CPU kernel accepts 2, 4 or 8)
COMPUTE = torch.bfloat16  # the activations' dtype inside the packed kernels
# From this many rows on (a prefill), an int8 product is a bf16 one on the weights converted for the call, on a CPU
# with bf16 units: torch's int8 kernel reads the weights again for every 4 rows. SmolLM2's 106 MB of int8 layers
# (AMD EPYC, 2 cores, avx512_bf16): 8 rows 26 ms either way, 12 rows 30 ms against 29, 16 rows 37 against 31, 40 rows
# 70 against 46.
INT8_DEQUANT_ROWS = 12


def resolve_weights(weights: str, device: str) -> str:
    """``auto`` made concrete for ``device`` (see the module docstring); int8 and int4 need the CPU kernels."""
    name = check_weights(weights)
    if name == "auto":
        return "fp32" if device == "cpu" else "bf16"
    if name in ("int8", "int4") and device != "cpu":
        raise InvalidOptionsError(f"--weights {name} runs on the CPU only (torch's packed {name} kernels); on "
                                  f"{device} use --weights bf16 (or auto).")
    return name


def resolve_speech_weights(weights: str, device: str, dtype: str = "auto") -> tuple[str, str]:
    """Whisper's text decoder weights (``--speech-weights``) made concrete for ``device``, with the reason.

    ``auto`` is int8 on a CPU with bf16 units (``avx512_bf16``/``amx_bf16``: the packed int8 kernel takes bf16
    activations, which such CPUs compute natively) when the ``dtype`` setting is ``auto`` too (an explicit dtype asks
    for that precision everywhere): measured there (AMD EPYC, avx512_bf16, 2 threads) whisper-base's decoding steps
    ran 1.7x faster than at fp32 and the benchmark's transcript kept its word error rate (3.8% both, bench/speech.py).
    Elsewhere fp32 (not measured on CPUs without bf16 units); on a GPU whisper's own precision, the engine's dtype."""
    from .device import cpu_bf16_units

    name = check_speech_weights(weights)
    if device != "cpu":
        if name == "int8":
            raise InvalidOptionsError(f"--speech-weights int8 runs on the CPU only; on {device} whisper runs in the "
                                      "engine's dtype (use --speech-weights auto).")
        return "dtype", f"whisper runs in the engine's dtype on {device}"
    if name != "auto":
        return name, "set by configuration"
    units = cpu_bf16_units()
    if units and dtype == "auto":
        return "int8", f"this CPU has bf16 units ({units}); measured 1.7x faster decoding, same word error rate"
    return "fp32", "the dtype is set" if units else "no bf16 units on this CPU (int8 not measured here)"


class _Packed(torch.nn.Module):
    """Shared by the reduced-precision Linear layers: (..., in) -> (..., out) in the input's dtype."""

    in_features: int
    out_features: int

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = linear.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self._matmul(x.reshape(-1, self.in_features).to(COMPUTE)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BF16Linear(_Packed):
    """A Linear layer whose weight is stored, and multiplied, in bfloat16.

    ``packed`` (where :func:`bf16_packing_available`): the weight is held only in oneDNN's blocked layout for
    :data:`PACK_ROWS` rows, reordered once here, as :class:`PackedLinear` does at fp32; ``F.linear`` in bf16 reorders
    it inside every product instead. SmolLM2-135M's output layer (49,152 x 576) on the AVX-512 EPYC of
    bench/README.md: 1.0 ms at 1 row and 2.0 ms at 8 packed, against 4.2 and 5.3 ms through ``F.linear`` (and 0.8 and
    6.1 ms for torch's int8 kernel, whose cost grows with the rows in blocks of 4). The packed tensor is opaque:
    :attr:`weight` is then oneDNN's tensor, which torch.compile cannot trace (a compiled step keeps ``packed`` off)."""

    def __init__(self, linear: torch.nn.Module, packed: bool = False) -> None:
        super().__init__(linear)
        weight = linear.weight.detach().to(torch.bfloat16).contiguous()
        self.packed = packed
        if packed:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
        self.register_buffer("weight", weight)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, None, "none", [], "")
        return torch.nn.functional.linear(x, self.weight)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", packed for {PACK_ROWS} rows" if self.packed else "")


def _dequant_rows() -> int | None:
    """:data:`INT8_DEQUANT_ROWS` on a CPU with bf16 units, else None (decided when a layer is made, not in its
    forward pass, which torch.compile traces)."""
    from .device import cpu_bf16_units

    return INT8_DEQUANT_ROWS if cpu_bf16_units() else None


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weights -> (int8 (out, in), scales (out,)): symmetric per row, round to nearest, so that
    ``q * scale`` is within half a scale of every weight."""
    w = weight.detach().float()
    largest = torch.linalg.vector_norm(w, ord=float("inf"), dim=1)  # max |w| per row, without an |w| copy
    scales = (largest / 127).clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.div(w, scales[:, None]).round_().clamp_(-127, 127).to(torch.int8)  # one temporary, not three
    return q, scales


class Int8Linear(_Packed):
    """Weight-only int8: one int8 per weight, one scale per output row."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__(linear)
        q, scales = quantize_int8(linear.weight)
        self.register_buffer("weight", q.contiguous())
        self.register_buffer("scales", scales.to(COMPUTE))
        self.dequant_rows = _dequant_rows()

    @classmethod
    def from_rows(cls, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        """A layer of already quantized rows (int8 (out, in), scales (out,)), e.g. several layers' rows stacked."""
        layer = cls.__new__(cls)
        torch.nn.Module.__init__(layer)
        layer.out_features, layer.in_features = weight.shape
        layer.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)
        layer.register_buffer("weight", weight.contiguous())
        layer.register_buffer("scales", scales.to(COMPUTE).contiguous())
        layer.dequant_rows = _dequant_rows()
        return layer

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.dequant_rows and x.shape[0] >= self.dequant_rows:  # (int8 is exact in bf16; the scales after)
            return torch.nn.functional.linear(x, self.weight.to(COMPUTE)) * self.scales
        return torch.ops.aten._weight_int8pack_mm(x, self.weight, self.scales)


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, in) float weights -> (codes 0..15 int32 (out, in), scales (out, in/group), zeros (out, in/group)), with
    ``w ~= (code - 8) * scale + zero`` (the convention of torch's int4 kernels): each group's range in 15 steps."""
    w = weight.detach().float()
    out_f, in_f = w.shape
    g = w.reshape(out_f, in_f // group, group)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scales = ((hi - lo) / 15).clamp(min=1e-8)
    codes = torch.round((g - lo[..., None]) / scales[..., None]).clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
    return codes, scales, lo + 8 * scales


class Int4Linear(_Packed):
    """Weight-only int4 in groups of :data:`INT4_GROUP` inputs, each with a scale and an offset."""

    def __init__(self, linear: torch.nn.Linear, group: int = INT4_GROUP) -> None:
        super().__init__(linear)
        codes, scales, zeros = quantize_int4(linear.weight, group)
        self.group = group
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, INT4_INNER_TILES))
        # (in/group, out, 2): scale and zero of each group, as the kernel reads them
        self.register_buffer("scales_and_zeros", torch.stack([scales, zeros], dim=-1).transpose(0, 1)
                             .contiguous().to(COMPUTE))

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight, self.group, self.scales_and_zeros)


class OneDNNLinear(torch.nn.Module):
    """An fp32 Linear layer whose product is oneDNN's (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's
    own compiler emits for CPU Linear layers) instead of MKL's: the same weights, in the same (out, in) layout.

    For the few rows of a decoding step MKL runs these products on one thread; oneDNN splits them. SmolLM2-135M's 211
    products of one step (AMD EPYC, 2 cores, AVX-512): 1 row 24.9 ms against 31.7 ms for MKL on the column-major
    layout the engine used before, 8 rows 34.9 ms against 61.6 ms. The engine uses it for generation's fp32 weights
    on the CPU when :func:`onednn_available`."""

    def __init__(self, linear: torch.nn.Module) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.weight = torch.nn.Parameter(weight if weight.is_contiguous() else weight.contiguous(), requires_grad=False)
        bias = getattr(linear, "bias", None)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return onednn_linear(x, self.weight, self.bias)

    def plain(self) -> torch.nn.Linear:
        """A plain ``nn.Linear`` on the same tensors (nothing copied): for a graph compiled in max-autotune, whose
        products inductor packs and times itself (its own C++ kernels against ATen's, oneDNN's among them), where
        this layer's opaque product would be left out of the tuning."""
        linear = torch.nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = self.weight
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (x of any leading shape, weight (out, in) fp32) by oneDNN's product; inside a
    torch.compile graph the same product as an opaque operation (:func:`_onednn_op`): inductor would otherwise lower
    ``F.linear`` to MKL's, single-threaded for the few rows of a decoding step."""
    if torch.compiler.is_compiling():
        return _onednn_op(x, weight, bias)
    return _onednn_product(x, weight, bias)


def _onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "").reshape(*x.shape[:-1], -1)


@torch.library.custom_op("llm_lab::onednn_linear", mutates_args=())
def _onednn_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """:func:`onednn_linear` as a custom operation, for compiled graphs (eager calls skip the dispatcher)."""
    return _onednn_product(x, weight, bias)


@_onednn_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


class PackedLinear(torch.nn.Module):
    """An fp32 Linear layer whose weight is held only in oneDNN's blocked layout, reordered once at load for
    products of :data:`PACK_ROWS` rows (``torch.ops.mkldnn._reorder_linear_weight``, the packing torch's own compiler
    uses for CPU Linear layers); each product is ``torch.ops.mkldnn._linear_pointwise`` on it.

    With the plain (out, in) layout oneDNN reorders the weight inside every call of more than one row: SmolLM2's
    decoding step at batch 8 spent 37 ms a step in its products, against 27 ms with the weights packed once (AMD
    EPYC, 2 cores, AVX-512; batch 1 unchanged, 33 ms either way), and the 8-request workload went from 110 to 150
    tokens/s. The packed tensor is opaque (no strided storage): :attr:`weight` is a dense copy, made on each read,
    for code that inspects weights; nothing in the decoding path reads it. Used for fp32 weights on the CPU when
    :func:`packing_available`: by :class:`~engine.llama.LlamaDecoder` (generation) and by whisper's decoding step
    (:mod:`engine.tasks.whisper_step`, speech: 4.6-4.9 s -> 4.0-4.1 s on the speech benchmark)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(),
                                                                               PACK_ROWS))
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, layer: torch.nn.Module) -> "PackedLinear":
        """The packed form of a Linear-type ``layer`` (``weight`` (out, in), ``bias`` or None)."""
        return cls(layer.weight, getattr(layer, "bias", None))

    @property
    def weight(self) -> torch.Tensor:
        return self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"packed for {PACK_ROWS} rows")


class FusedPart(torch.nn.Module):
    """One of several Linear layers fused into ``fused`` (its outputs side by side): output columns
    ``start:end`` of ``fused`` on the same input.

    transformers calls the parts of a fused group one after the other on one tensor (q_proj, k_proj and v_proj on
    the same hidden state; gate_proj and up_proj on the same input): the first part to see an input computes the
    fused product once, the group's other parts slice it, and the group forgets it once every part had its share.
    Any other input (another tensor object, a part asked twice) computes the product anew, so the result is always
    the fused layer's on the input given; concurrent callers at worst compute it twice."""

    def __init__(self, fused: torch.nn.Module, start: int, end: int, index: int, parts: int, group: list) -> None:
        super().__init__()
        self.fused, self.start, self.end, self.index = fused, start, end, index
        self.in_features, self.out_features = fused.in_features, end - start
        self._parts = parts  # how many parts share the group
        self._group = group  # [(input, output, parts served)] shared by the parts of one fused layer, or [None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        held = self._group[0]
        if held is None or held[0] is not x or self.index in held[2]:
            held = (x, self.fused(x), set())
            self._group[0] = held
        held[2].add(self.index)
        if len(held[2]) == self._parts and self._group[0] is held:
            self._group[0] = None  # every part had its share: let go of the input and the product
        return held[1][..., self.start:self.end]

    @property
    def weight(self) -> torch.Tensor:
        weight = self.fused.weight
        return (weight if weight.layout == torch.strided else weight.to_dense())[self.start:self.end]

    def extra_repr(self) -> str:
        return f"columns {self.start}:{self.end} of the fused layer"


def fuse_parts(fused: torch.nn.Module, sizes: list[int]) -> list[FusedPart]:
    """The parts of ``fused`` whose outputs are ``sizes`` columns wide, in order, sharing one group."""
    group: list = [None]
    parts, start = [], 0
    for index, size in enumerate(sizes):
        parts.append(FusedPart(fused, start, start + size, index, len(sizes), group))
        start += size
    return parts


def share_fused(fused: torch.nn.Module, parent: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module:
    """The layers ``names`` of ``parent`` made the parts of ``fused`` (:func:`fuse_parts`; ``fused`` is those layers
    side by side, in any form: packed, int8...), so that the fused weights are the only copy. Returns ``fused``."""
    sizes = [getattr(parent, name).out_features for name in names]
    for name, part in zip(names, fuse_parts(fused, sizes)):
        setattr(parent, name, part)
    return fused


def pack_fused(fused: torch.nn.Module, parent: torch.nn.Module, names: tuple[str, ...]) -> PackedLinear:
    """``fused`` (the layers ``names`` of ``parent`` side by side) packed, and those layers made its parts."""
    return share_fused(PackedLinear.from_linear(fused), parent, names)


PACK_ROWS = 8  # the rows PackedLinear's weights are reordered for (the benchmark's 8 concurrent requests)
_packing: bool | None = None


def packing_available() -> bool:
    """Whether this torch can reorder fp32 Linear weights for oneDNN and multiply by them, agreeing with
    ``F.linear`` (checked once on a small product)."""
    global _packing
    if _packing is None:
        try:
            x, w, b = torch.randn(3, 40), torch.randn(24, 40), torch.randn(24)
            _packing = onednn_available() and torch.allclose(PackedLinear(w, b)(x), torch.nn.functional.linear(
                x, w, b), atol=1e-4, rtol=1e-4)
        except (AttributeError, RuntimeError, NotImplementedError):
            _packing = False
    return _packing


_bf16_packing: bool | None = None


def bf16_packing_available() -> bool:
    """Whether bf16 weights packed once for oneDNN pay here (:class:`BF16Linear` with ``packed``): a CPU with bf16
    units (without them oneDNN emulates bf16, slower than fp32) and a torch whose packed bf16 product agrees with
    ``F.linear`` in bf16 (checked once on a small product)."""
    global _bf16_packing
    if _bf16_packing is None:
        from .device import cpu_bf16_units

        try:
            x, w = torch.randn(3, 64), torch.nn.Linear(64, 24)
            exact = torch.nn.functional.linear(x.bfloat16(), w.weight.bfloat16(), w.bias.bfloat16()).float()
            _bf16_packing = (cpu_bf16_units() is not None and packing_available()
                             and torch.allclose(BF16Linear(w, packed=True)(x), exact, atol=0.05, rtol=0.02))
        except (AttributeError, RuntimeError, NotImplementedError):
            _bf16_packing = False
    return _bf16_packing


def packs(weights: str, device: str, compile: bool = False) -> bool:
    """Whether generation at the resolved setting ``weights`` packs weights once for oneDNN here: fp32 ones where
    :func:`packing_available`, bf16 ones (and the int8/int4 output layer) where :func:`bf16_packing_available`; on
    the CPU only, and never for a compiled step (the packed tensors are opaque to torch.compile, which packs its
    own)."""
    if compile or device != "cpu":
        return False
    return packing_available() if weights == "fp32" else bf16_packing_available()


def tensor_key(t: torch.Tensor) -> int:
    """A key that is equal for tensors sharing memory: the data pointer, or the object for opaque tensors (oneDNN's
    packed weights have no strided storage)."""
    return t.data_ptr() if t.layout == torch.strided else id(t)


_onednn: bool | None = None


def onednn_available() -> bool:
    """Whether this torch has oneDNN's fp32 Linear kernel for this CPU and it agrees with ``F.linear`` (checked once
    on a small product)."""
    global _onednn
    if _onednn is None:
        try:
            x, w, b = torch.randn(3, 40), torch.randn(24, 40), torch.randn(24)
            y = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            _onednn = bool(torch.backends.mkldnn.is_available()) and torch.allclose(
                y, torch.nn.functional.linear(x, w, b), atol=1e-4, rtol=1e-4)
        except (AttributeError, RuntimeError, NotImplementedError):
            _onednn = False
        if not _onednn:
            log.info("oneDNN fp32 Linear kernel unavailable: generation uses torch's default matmul")
    return _onednn


def _replace(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    """Put ``module`` in place of ``model``'s submodule of qualified name ``name``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def apply_onednn(model: torch.nn.Module, kinds: tuple[type, ...] = (torch.nn.Linear,)) -> int:
    """Every fp32 CPU Linear layer of ``model`` (of exactly one of ``kinds``: ``nn.Linear``, or a subclass that
    computes the same, such as openai-whisper's) becomes a :class:`OneDNNLinear` on the same weight tensor (no copy
    when it is contiguous; shared tensors, such as tied embeddings, stay shared). Nothing changes where
    :func:`onednn_available` is false, or for layers on a GPU or in another dtype. Returns how many were replaced."""
    if not onednn_available():
        return 0
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) in kinds and module.weight.dtype == torch.float32
               and module.weight.device.type == "cpu" and name]
    for name, linear in targets:
        _replace(model, name, OneDNNLinear(linear))
    return len(targets)


_LAYERS = WEIGHT_LAYERS = {"bf16": BF16Linear, "int8": Int8Linear, "int4": Int4Linear}


def weight_layer(weights: str, pack: bool = False) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """What a Linear layer becomes at the reduced-precision setting ``weights`` (``bf16``, ``int8``, ``int4``);
    ``pack``: bf16 ones packed once for oneDNN (see :func:`apply_weights`)."""
    return functools.partial(BF16Linear, packed=pack) if weights == "bf16" else _LAYERS[weights]


def apply_weights(model: torch.nn.Module, weights: str, *, skip: tuple[str, ...] = (), pack: bool = False) -> int:
    """Replace ``model``'s Linear layers (all but those whose qualified name starts with one in ``skip``) by their
    ``weights`` counterparts, in place; ``fp32`` leaves the model alone. Layers whose shape the packed kernel
    cannot take (int4: inputs not a multiple of the group) stay as they are. Returns how many were replaced.

    ``pack`` (where :func:`bf16_packing_available`; not for a compiled step): bf16 weights packed once for oneDNN,
    and the output layer (``lm_head``) of the int8 and int4 settings in packed bf16 rather than int8: a decoding
    step's largest product at any number of rows (SmolLM2: 20% more tokens/s at 8 concurrent requests, 5% at one),
    and closer to fp32 than int8."""
    if weights not in _LAYERS:
        return 0
    layer = weight_layer(weights, pack)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and not name.startswith(skip) if name]
    replaced = 0
    with torch.no_grad():
        for name, linear in targets:
            if name == "lm_head" and weights != "bf16" or weights == "int4" and linear.in_features % INT4_GROUP:
                continue
            _replace(model, name, layer(linear))
            replaced += 1
    if weights != "bf16" and isinstance(getattr(model, "lm_head", None), torch.nn.Linear) and "lm_head" not in skip:
        with torch.no_grad():  # int4 there cost most of int4's perplexity (all-int4 SmolLM2: 6.8%), so int8 or bf16
            model.lm_head = BF16Linear(model.lm_head, packed=True) if pack else Int8Linear(model.lm_head)
        replaced += 1
    if hasattr(model, "config") and getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False  # the output layer is its own (quantized) copy now
    log.info("weights %s: %d Linear layers replaced", weights, replaced)
    return replaced


def bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes one decoding step reads at batch 1: every Linear-type layer's weights (and scales, biases) and the
    small tensors (norms); an embedding table only when it doubles as the output layer (tied), as it then is read
    whole. Shared tensors count once."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if tensor is None or tensor_key(tensor) in seen:
                continue
            seen.add(tensor_key(tensor))
            total += tensor.numel() * tensor.element_size()
    return total
