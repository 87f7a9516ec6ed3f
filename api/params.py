"""Request bodies of the OpenAI API, checked and turned into the engine's arguments.

Checks that name the parameter happen here (a 400 with ``param`` set); the ranges of the generation options are the
engine's own (``GenerationOptions``), whose messages the API passes on. Parameters this server cannot honour are
refused with a message saying so, never silently ignored; a few that change nothing here (``user``, ``store``,
``metadata``...) are accepted.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from engine.tasks.generation import ALTERNATIVES

from .errors import ApiError, bad_param

#: accepted and ignored: they only describe the caller or ask for bookkeeping this server does not do
HARMLESS = frozenset({"user", "store", "metadata", "service_tier", "parallel_tool_calls", "prompt_cache_key",
                      "safety_identifier"})
MAX_STOP = 4  # as OpenAI


@dataclasses.dataclass(frozen=True)
class GenerationCall:
    """One chat or completion request, in the engine's terms."""

    model: str | None
    prompt: str | list[dict[str, str]]  # text (completions) or the conversation (chat)
    chat: bool
    options: dict[str, Any]  # GenerationOptions fields
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int


def _number(body: dict, name: str, default: float | None, low: float, high: float) -> float | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_param(name, f"{name} must be a number, got {value!r}.")
    if not low <= value <= high:
        raise bad_param(name, f"{name} must be between {low:g} and {high:g}, got {value!r}.")
    return float(value)


def _whole(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_param(name, f"{name} must be a whole number, got {value!r}.")
    if not low <= value <= high:
        raise bad_param(name, f"{name} must be between {low} and {high}, got {value}.")
    return value


def _model(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise bad_param("model", f"model must be a model's name (GET /v1/models lists them), got {model!r}.")
    return model.strip() if model else None


def _refuse_unknown(body: dict, known: set[str]) -> None:
    for name in body:
        if name not in known and name not in HARMLESS:
            raise bad_param(name, f"Unsupported parameter {name!r}: this server understands "
                                  f"{', '.join(sorted(known))}.")


def _zero(body: dict, name: str) -> None:
    if body.get(name) not in (None, 0, 0.0):
        raise bad_param(name, f"{name} is not supported here (only 0); use repetition_penalty (1 to 3) to make "
                              "repeated tokens less likely.")


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad_param("stop", "stop must be a string or a list of non-empty strings.")
    if len(stops) > MAX_STOP:
        raise bad_param("stop", f"At most {MAX_STOP} stop sequences, got {len(stops)}.")
    return tuple(stops)


def _sampling(body: dict, default_max_tokens: int | None) -> dict[str, Any]:
    """The GenerationOptions fields of a chat or completion request (OpenAI's defaults: temperature 1, top_p 1, no
    top-k, no repetition penalty)."""
    if _whole(body, "n", 1, 1_000_000) not in (None, 1):
        raise bad_param("n", "n must be 1: this server returns one choice per request (send several requests).")
    _zero(body, "presence_penalty")
    _zero(body, "frequency_penalty")
    if body.get("logit_bias"):
        raise bad_param("logit_bias", "logit_bias is not supported here.")
    max_tokens = _whole(body, "max_completion_tokens", 1, 10**9) or _whole(body, "max_tokens", 1, 10**9)
    options: dict[str, Any] = {
        "temperature": _number(body, "temperature", 1.0, 0, 2),
        "top_p": _number(body, "top_p", 1.0, 0, 1),
        "top_k": _whole(body, "top_k", 0, 10**6) or 0,  # vLLM's extension
        "repetition_penalty": _number(body, "repetition_penalty", 1.0, 0, 10),  # vLLM's extension
        "stop": _stop(body),
        "seed": _whole(body, "seed", -(2**63), 2**63 - 1),
    }
    if options["top_p"] == 0:
        raise bad_param("top_p", "top_p must be above 0 (1 = off).")
    if max_tokens is not None or default_max_tokens is not None:
        options["max_new_tokens"] = max_tokens if max_tokens is not None else default_max_tokens
    if options["seed"] is not None and options["seed"] < 0:
        options["seed"] %= 2**63  # OpenAI accepts negative seeds; the engine's generators take 0 .. 2**63 - 1
    return options


def _stream(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_param("stream", f"stream must be true or false, got {stream!r}.")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise bad_param("stream_options", "stream_options must be an object such as {\"include_usage\": true}.")
    if stream_options and not stream:
        raise bad_param("stream_options", "stream_options is only allowed with stream: true.")
    return bool(stream), bool(stream_options.get("include_usage"))


CHAT_PARAMS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
               "repetition_penalty", "stop", "seed", "n", "stream", "stream_options", "logprobs", "top_logprobs",
               "presence_penalty", "frequency_penalty", "logit_bias"}
ROLES = ("system", "developer", "user", "assistant")


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_param(f"messages[{index}].content", f"messages[{index}].content: only text parts are "
                                                              "supported ({\"type\": \"text\", \"text\": ...}).")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise bad_param(f"messages[{index}].content", f"messages[{index}].content must be text.")
    return content


def chat_call(body: Any) -> GenerationCall:
    """Check a ``/v1/chat/completions`` body."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    _refuse_unknown(body, CHAT_PARAMS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "messages must be a non-empty list of {\"role\", \"content\"} objects.")
    conversation = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_param(f"messages[{i}].role", f"messages[{i}] needs a role, one of {', '.join(ROLES)}.")
        role = "system" if m["role"] == "developer" else m["role"]
        conversation.append({"role": role, "content": _content(m, i)})
    if conversation[-1]["role"] == "assistant":
        raise bad_param("messages", "The last message must be the user's (or the system's): the model answers it.")
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise bad_param("logprobs", "logprobs must be true or false.")
    top = _whole(body, "top_logprobs", 0, ALTERNATIVES) or 0
    if top and not logprobs:
        raise bad_param("top_logprobs", "top_logprobs needs logprobs: true.")
    stream, usage = _stream(body)
    return GenerationCall(_model(body), conversation, True, _sampling(body, None), stream, usage, logprobs, top)


COMPLETION_PARAMS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop",
                     "seed", "n", "stream", "stream_options", "logprobs", "echo", "best_of", "suffix",
                     "presence_penalty", "frequency_penalty", "logit_bias"}


def completion_call(body: Any) -> GenerationCall:
    """Check a ``/v1/completions`` body (the prompt is continued as it is, without a chat template)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    _refuse_unknown(body, COMPLETION_PARAMS)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_param("prompt", "prompt must be one text (token id arrays and batches of prompts are not "
                                  "supported: send one request per prompt).")
    if body.get("echo"):
        raise bad_param("echo", "echo is not supported here.")
    if body.get("suffix"):
        raise bad_param("suffix", "suffix (fill in the middle) is not supported here.")
    if _whole(body, "best_of", 1, 1_000_000) not in (None, 1):
        raise bad_param("best_of", "best_of must be 1.")
    top = _whole(body, "logprobs", 0, ALTERNATIVES)
    stream, usage = _stream(body)
    return GenerationCall(_model(body), prompt, False, _sampling(body, 16), stream, usage, top is not None, top or 0)


EMBEDDING_PARAMS = {"model", "input", "encoding_format", "dimensions"}


def embedding_call(body: Any) -> tuple[str | None, list[str], str, int | None]:
    """Check a ``/v1/embeddings`` body: (model, texts, encoding format, dimensions)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    _refuse_unknown(body, EMBEDDING_PARAMS)
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_param("input", "input must be a text or a non-empty list of texts (token id arrays are not "
                                 "supported).")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad_param("encoding_format", f"encoding_format must be 'float' or 'base64', got {fmt!r}.")
    return _model(body), texts, fmt, _whole(body, "dimensions", 1, 100_000)


AUDIO_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


@dataclasses.dataclass(frozen=True)
class AudioCall:
    model: str | None
    data: bytes
    language: str | None
    response_format: str
    temperature: float


def audio_call(form: Any, translate: bool) -> AudioCall:
    """Check a ``/v1/audio/transcriptions`` (or ``translations``) multipart form."""
    known = {"file", "model", "language", "response_format", "temperature", "prompt", "timestamp_granularities[]",
             "timestamp_granularities", "stream"}
    if translate:
        known.discard("language")
    for name in form.keys():
        if name not in known and name not in HARMLESS:
            raise bad_param(name, f"Unsupported parameter {name!r}: this endpoint understands "
                                  f"{', '.join(sorted(known))}.")
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise bad_param("file", "Send the recording as the multipart field 'file'.")
    fmt = form.get("response_format") or "json"
    if fmt not in AUDIO_FORMATS:
        raise bad_param("response_format", f"response_format must be one of {', '.join(AUDIO_FORMATS)}, got "
                                           f"{fmt!r}.")
    try:
        temperature = float(form.get("temperature") or 0)
    except ValueError:
        raise bad_param("temperature", "temperature must be a number from 0 to 1.") from None
    if not 0 <= temperature <= 1:
        raise bad_param("temperature", f"temperature must be between 0 and 1, got {temperature:g}.")
    if temperature != 0:
        raise bad_param("temperature", "Only temperature 0 can be asked for: the engine decodes greedily and "
                                       "raises the temperature by itself (0.2, 0.4 ... 1.0) for a window whose "
                                       "text comes out repetitive or unsure, as Whisper does.")
    if form.get("prompt"):
        raise bad_param("prompt", "prompt (text to condition the transcript on) is not supported here.")
    grains = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    if any(g != "segment" for g in grains):
        raise bad_param("timestamp_granularities", "Only segment timestamps are available (not word ones).")
    if str(form.get("stream") or "false").lower() not in ("false", "0"):
        raise bad_param("stream", "Streamed transcription is not supported here.")
    language = None if translate else (form.get("language") or None)
    model = form.get("model") or None
    return AudioCall(model, b"", language, fmt, temperature)
