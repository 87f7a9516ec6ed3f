"""Settings: one frozen dataclass, read from the environment, overridable from the command line.

The environment variables this ecosystem already uses keep their meaning: ``HF_HOME`` (where hub models and our
converted models are cached), ``HF_HUB_OFFLINE`` (never touch the network). Ours start with ``LLM_LAB_``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .errors import InvalidOptionsError

GB = 1024**3
MB = 1024**2


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def compile_mode(value: object) -> "bool | str":
    """The ``compile`` setting from what a user wrote: False (off), True (torch.compile's default mode) or
    "max-autotune"; anything else is refused with the choices."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on", "default"):
        return True
    if text == "max-autotune":
        return text
    raise InvalidOptionsError(f"compile must be off, on (default) or max-autotune, got {value!r}.")


WEIGHTS = ("auto", "fp32", "bf16", "int8", "int4")  # text generation's Linear weights (see engine.weights)
SPEECH_WEIGHTS = ("auto", "fp32", "int8")  # whisper's decoder weights (see engine.weights.resolve_speech_weights)


def check_weights(weights: str | None, known: tuple[str, ...] = WEIGHTS, what: str = "weights") -> str:
    """A weights setting (text generation's, or ``known`` ones such as :data:`SPEECH_WEIGHTS`), lower-cased
    (``float32``/``bfloat16`` accepted); an unknown one raises :class:`InvalidOptionsError` listing the known ones."""
    name = (weights or "auto").strip().lower()
    name = {"float32": "fp32", "bfloat16": "bf16"}.get(name, name)
    if name not in known:
        raise InvalidOptionsError(f"Unknown {what} setting {weights!r}; choose one of {', '.join(known)}.")
    return name


def check_speech_weights(weights: str | None) -> str:
    """The speech weights setting (:data:`SPEECH_WEIGHTS`), as :func:`check_weights` checks it."""
    return check_weights(weights, SPEECH_WEIGHTS, "speech weights")


def default_cache_dir() -> Path:
    """``$LLM_LAB_CACHE``, else ``$HF_HOME/llm-lab``, else ``~/.cache/huggingface/llm-lab``."""
    if os.environ.get("LLM_LAB_CACHE"):
        return Path(os.environ["LLM_LAB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "llm-lab"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the engine and the app can be configured with. Field comments name the environment variable."""

    device: str = "auto"  # LLM_LAB_DEVICE: auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # LLM_LAB_DTYPE: auto | float32 | bfloat16 | float16
    # LLM_LAB_ENCODER_DTYPE: the sentiment classifiers', sentence encoders' and whisper's audio encoder's dtype (on the
    # CPU): auto (= dtype, except bf16 on a CPU with bf16 dot-product units when dtype is auto: see engine.device)
    # | float32 | bfloat16 | float16
    encoder_dtype: str = "auto"
    weights: str = "auto"  # LLM_LAB_WEIGHTS: text generation's Linear weights: auto | fp32 | bf16 | int8 | int4
    # LLM_LAB_SPEECH_WEIGHTS: whisper's text decoder weights: auto (int8 on a CPU with bf16 units, else fp32) | fp32
    # | int8 (CPU only)
    speech_weights: str = "auto"
    # LLM_LAB_COMPILE: compile Llama-type models' decoding step with torch.compile when they load (engine.llama;
    # tens of seconds the first time on a machine, then faster steps): off, on ("default"), or "max-autotune"
    # (inductor measures its own C++ products against ATen's for each shape on this device and keeps the faster,
    # with the weights folded in as constants: minutes at load, more memory, the fastest int8 steps)
    compile: bool | str = False
    threads: int | None = None  # LLM_LAB_THREADS: torch CPU threads (default: torch's choice)
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)  # LLM_LAB_CACHE
    offline: bool = False  # HF_HUB_OFFLINE: never contact the hub
    models_file: str | None = None  # LLM_LAB_MODELS: a JSON/TOML file, or inline JSON, adding or overriding models
    memory_budget_bytes: int = 8 * GB  # LLM_LAB_MEMORY_BUDGET_GB: loaded models beyond this are evicted, LRU first
    max_batch: int = 16  # LLM_LAB_MAX_BATCH: requests one model serves in one forward pass
    queue_size: int = 64  # LLM_LAB_QUEUE_SIZE: waiting requests per model before "busy, try again"
    concurrency: int = 8  # LLM_LAB_CONCURRENCY: UI events running model work at once (shared by all tabs)
    max_chars: int = 20_000  # LLM_LAB_MAX_CHARS: longest text input
    max_audio_seconds: float = 3600.0  # LLM_LAB_MAX_AUDIO_SECONDS: longest recording
    max_upload_bytes: int = 100 * MB  # LLM_LAB_MAX_UPLOAD_MB: largest uploaded file
    allow_custom_models: bool = False  # LLM_LAB_ALLOW_CUSTOM_MODELS: let the UI load hub ids/paths not in the registry

    def __post_init__(self) -> None:
        for name in ("max_batch", "queue_size", "concurrency", "max_chars", "max_upload_bytes", "memory_budget_bytes"):
            if getattr(self, name) < 1:
                raise InvalidOptionsError(f"Setting {name} must be at least 1, got {getattr(self, name)}.")
        if self.max_audio_seconds <= 0:
            raise InvalidOptionsError("Setting max_audio_seconds must be positive.")
        object.__setattr__(self, "weights", check_weights(self.weights))
        object.__setattr__(self, "speech_weights", check_speech_weights(self.speech_weights))
        object.__setattr__(self, "compile", compile_mode(self.compile))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Settings from environment variables; keyword ``overrides`` (e.g. from the command line) win."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for key, field, cast in (
            ("LLM_LAB_DEVICE", "device", str), ("LLM_LAB_DTYPE", "dtype", str), ("LLM_LAB_THREADS", "threads", int),
            ("LLM_LAB_ENCODER_DTYPE", "encoder_dtype", str),
            ("LLM_LAB_WEIGHTS", "weights", str), ("LLM_LAB_SPEECH_WEIGHTS", "speech_weights", str),
            ("LLM_LAB_MODELS", "models_file", str), ("LLM_LAB_MAX_BATCH", "max_batch", int),
            ("LLM_LAB_QUEUE_SIZE", "queue_size", int), ("LLM_LAB_CONCURRENCY", "concurrency", int),
            ("LLM_LAB_MAX_CHARS", "max_chars", int), ("LLM_LAB_MAX_AUDIO_SECONDS", "max_audio_seconds", float),
        ):
            if env.get(key):
                try:
                    values[field] = cast(env[key])
                except ValueError:
                    raise InvalidOptionsError(f"{key}={env[key]!r} is not a valid {cast.__name__}.") from None
        if env.get("LLM_LAB_MEMORY_BUDGET_GB"):
            values["memory_budget_bytes"] = int(float(env["LLM_LAB_MEMORY_BUDGET_GB"]) * GB)
        if env.get("LLM_LAB_MAX_UPLOAD_MB"):
            values["max_upload_bytes"] = int(float(env["LLM_LAB_MAX_UPLOAD_MB"]) * MB)
        if env.get("LLM_LAB_CACHE"):
            values["cache_dir"] = Path(env["LLM_LAB_CACHE"]).expanduser()
        values["offline"] = _truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE"))
        values["allow_custom_models"] = _truthy(env.get("LLM_LAB_ALLOW_CUSTOM_MODELS"))
        values["compile"] = compile_mode(env.get("LLM_LAB_COMPILE"))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
