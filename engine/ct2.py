"""Read CTranslate2 ``model.bin`` files and turn a CTranslate2 Whisper model into an openai-whisper checkpoint.

The reader follows the layout written by ``ModelSpec._serialize`` in CTranslate2
(``python/ctranslate2/specs/model_spec.py``) and read by ``Model::load`` (``src/models/model.cc``); all
integers are little-endian::

    u32 binary_version                      # 6 today; this reader accepts 4 to 6
    str spec_name, u32 spec_revision        # e.g. "WhisperSpec", 3
    u32 n_variables, then per variable:
        str name, u8 rank, u32 dims[rank], u8 dtype_id, u32 n_bytes, n_bytes of raw data
    u32 n_aliases, then per alias: str alias, str target

where ``str`` is a u16 length that counts a trailing NUL, then the UTF-8 bytes and the NUL. Aliases let one tensor
appear under two names (Whisper's output projection shares the token embedding).

The mapping onto openai-whisper is lossless: tensors keep their dtype and values; only CTranslate2's fused
projections are split again (self-attention q,k,v; cross-attention k,v). openai-whisper's key projections have
no bias, and CTranslate2 stores zeros there, which the mapping checks.
"""
from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import logging
import struct
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelLoadError

logger = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSIONS = range(4, 7)
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclasses.dataclass(frozen=True)
class Ct2Model:
    """The variables of one ``model.bin``: name to tensor, aliases already resolved."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]


class _Cursor:
    """Sequential little-endian reader over one in-memory buffer."""

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer
        self.offset = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self.buffer[self.offset : self.offset + length])
        self.offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype, n_bytes: int) -> torch.Tensor:
        if self.offset + n_bytes > len(self.buffer):
            raise ModelLoadError("CTranslate2 model.bin is truncated (a tensor runs past the end of the file).")
        count = n_bytes // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset)
        self.offset += n_bytes
        # clone(): the tensor must own its memory, or torch.save would write the whole buffer once per tensor.
        return flat.reshape(shape).clone()


def read_model_bin(parts: list[Path]) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` given as one path or as its split parts in order."""
    sizes = [part.stat().st_size for part in parts]
    buffer = bytearray(sum(sizes))  # writable, so torch.frombuffer does not warn
    view, start = memoryview(buffer), 0
    for part, size in zip(parts, sizes):
        with part.open("rb") as f:
            if f.readinto(view[start : start + size]) != size:
                raise ModelLoadError(f"Could not read all of {part}.")
        start += size
    try:
        return _parse(buffer)
    except (struct.error, IndexError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{parts[0].name} is not a valid CTranslate2 model file: {error}") from error


def _parse(buffer: bytearray) -> Ct2Model:
    cursor = _Cursor(buffer)
    (binary_version,) = cursor.unpack("I")
    if binary_version not in SUPPORTED_BINARY_VERSIONS:
        raise ModelLoadError(f"CTranslate2 binary version {binary_version} is not supported (4 to 6 are).")
    spec = cursor.string()
    (revision,) = cursor.unpack("I")
    (n_variables,) = cursor.unpack("I")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(n_variables):
        name = cursor.string()
        (rank,) = cursor.unpack("B")
        shape = cursor.unpack(f"{rank}I") if rank else ()
        dtype_id, n_bytes = cursor.unpack("BI")
        if dtype_id >= len(_DTYPES):
            raise ModelLoadError(f"Variable {name!r} has unknown CTranslate2 dtype id {dtype_id}.")
        variables[name] = cursor.tensor(shape, _DTYPES[dtype_id], n_bytes)
    (n_aliases,) = cursor.unpack("I")
    for _ in range(n_aliases):
        alias, target = cursor.string(), cursor.string()
        variables[alias] = variables[target]
    if cursor.offset != len(buffer):
        raise ModelLoadError(f"CTranslate2 model.bin has {len(buffer) - cursor.offset} unexpected trailing bytes.")
    return Ct2Model(spec=spec, revision=revision, binary_version=binary_version, variables=variables)


def _count_layers(variables: dict[str, torch.Tensor], stack: str) -> int:
    prefix = f"{stack}/layer_"  # also matches "{stack}/layer_norm/...", hence isdigit()
    indices = {name[len(prefix) :].split("/", 1)[0] for name in variables if name.startswith(prefix)}
    return sum(index.isdigit() for index in indices)


def whisper_dims(model: Ct2Model) -> dict[str, int]:
    """Derive openai-whisper's ``ModelDimensions`` fields from the tensor shapes."""
    v = model.variables
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    return {
        "n_mels": v["encoder/conv1/weight"].shape[1],  # conv1 weight: (n_audio_state, n_mels, 3)
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": n_audio_state,
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": _count_layers(v, "encoder"),
        "n_vocab": n_vocab,
        "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": n_text_state,
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": _count_layers(v, "decoder"),
    }


def _linear(v: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = v[f"{src}/weight"]
    out[f"{dst}.bias"] = v[f"{src}/bias"]


def _norm(v: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = v[f"{src}/gamma"]
    out[f"{dst}.bias"] = v[f"{src}/beta"]


def _split_fused(
    v: dict[str, torch.Tensor], src: str, dst: str, names: tuple[str, ...], out: dict[str, torch.Tensor]
) -> None:
    """Split a fused projection (weight: (len(names) * d, d)) into openai-whisper's separate ones."""
    weights = v[f"{src}/weight"].chunk(len(names), dim=0)
    biases = v[f"{src}/bias"].chunk(len(names), dim=0)
    for name, weight, bias in zip(names, weights, biases):
        out[f"{dst}.{name}.weight"] = weight.clone()
        if name == "key":  # openai-whisper: Linear(n_state, n_state, bias=False)
            if torch.any(bias != 0):
                raise ModelLoadError(f"{src} has a non-zero key bias, which openai-whisper cannot represent.")
        else:
            out[f"{dst}.{name}.bias"] = bias.clone()


def _block(v: dict[str, torch.Tensor], src: str, dst: str, cross: bool, out: dict[str, torch.Tensor]) -> None:
    _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    _split_fused(v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"), out)
    _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out", out)
    if cross:  # CTranslate2 calls the decoder's cross-attention "attention"
        _norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
        _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", out)
        _split_fused(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"), out)
        _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", out)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)


def whisper_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """Map a CTranslate2 ``WhisperSpec`` onto openai-whisper's ``Whisper.state_dict()`` names."""
    try:
        return _whisper_state_dict(model)
    except KeyError as error:
        raise ModelLoadError(f"The CTranslate2 Whisper model lacks the tensor {error}.") from error


def _whisper_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    if model.spec != "WhisperSpec":
        raise ModelLoadError(f"Expected a CTranslate2 WhisperSpec model, found {model.spec!r}.")
    v = model.variables
    for name, tensor in v.items():
        if name.endswith("_scale") or (tensor.dim() > 1 and tensor.dtype not in _FLOAT_DTYPES):
            raise ModelLoadError(
                f"Quantized CTranslate2 weights ({name}) cannot be mapped losslessly; use a float16 or float32 model."
            )
    dims = whisper_dims(model)
    out: dict[str, torch.Tensor] = {}
    _linear(v, "encoder/conv1", "encoder.conv1", out)
    _linear(v, "encoder/conv2", "encoder.conv2", out)
    out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, out)
    _norm(v, "encoder/layer_norm", "encoder.ln_post", out)
    out["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, out)
    _norm(v, "decoder/layer_norm", "decoder.ln", out)
    projection = v.get("decoder/projection/weight")
    if projection is not None and not torch.equal(projection, out["decoder.token_embedding.weight"]):
        raise ModelLoadError("The decoder's output projection differs from its token embedding; "
                             "openai-whisper ties them.")
    return out


def alignment_heads_dump(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> bytes:
    """Encode (layer, head) pairs the way ``whisper.model.Whisper.set_alignment_heads`` decodes them."""
    mask = torch.zeros(n_text_layer, n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.numpy().tobytes(), mtime=0))


def convert_whisper(parts: list[Path], config_json: Path | None, destination: Path) -> dict[str, int]:
    """Write an openai-whisper checkpoint for the CTranslate2 Whisper model in ``parts``; return its dims.

    The checkpoint is ``{"dims": ..., "model_state_dict": ...}``, what ``whisper.load_model(path)`` reads, plus
    ``"alignment_heads"`` (bytes for ``model.set_alignment_heads``) when ``config.json`` lists them;
    ``load_model`` ignores that extra key.
    """
    model = read_model_bin(parts)
    state_dict = whisper_state_dict(model)
    dims = whisper_dims(model)
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state_dict}
    if config_json is not None and config_json.is_file():
        heads = json.loads(config_json.read_text(encoding="utf-8")).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = alignment_heads_dump(heads, dims["n_text_layer"], dims["n_text_head"])
    torch.save(checkpoint, destination)
    logger.info("Wrote openai-whisper checkpoint %s (%s)", destination, dims)
    return dims
