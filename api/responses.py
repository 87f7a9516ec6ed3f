"""The engine's results in OpenAI's response shapes: chat completions and their stream chunks, text completions,
log probabilities, embeddings, transcriptions. Pure functions of the results; no I/O."""
from __future__ import annotations

import base64
import json
import math
import secrets
import time
from typing import Any, Iterable

import numpy as np

from engine.subtitles import Segment, clean_segments, to_srt, to_vtt
from engine.tasks.generation import GenerationResult, TokenStep

FINISH = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def sse(data: Any) -> bytes:
    """One server-sent event carrying JSON (or the literal ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0  # OpenAI's floor for "impossible"


def _token_entry(token: str, prob: float) -> dict[str, Any]:
    return {"token": token, "logprob": _logprob(prob), "bytes": list(token.encode("utf-8"))}


def chat_logprobs(steps: Iterable[TokenStep], top: int) -> dict[str, Any]:
    """``choices[].logprobs`` of a chat completion: each token with its log probability (the model's own, at
    temperature 1) and its ``top`` most likely alternatives."""
    return {"content": [{**_token_entry(s.token, s.prob),
                         "top_logprobs": [_token_entry(a.token, a.prob) for a in s.alternatives[:top]]}
                        for s in steps], "refusal": None}


def completion_logprobs(steps: Iterable[TokenStep], top: int, offset: int = 0) -> dict[str, Any]:
    """``choices[].logprobs`` of a legacy completion: parallel lists, ``top_logprobs`` as {token: logprob}."""
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for s in steps:
        out["tokens"].append(s.token)
        out["token_logprobs"].append(_logprob(s.prob))
        out["top_logprobs"].append({a.token: _logprob(a.prob) for a in s.alternatives[:top]})
        out["text_offset"].append(offset)
        offset += len(s.text)
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(result: GenerationResult, call_id: str, logprobs: bool, top: int) -> dict[str, Any]:
    return {"id": call_id, "object": "chat.completion", "created": int(time.time()), "model": result.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text, "refusal": None},
                         "logprobs": chat_logprobs(result.tokens, top) if logprobs else None,
                         "finish_reason": FINISH[result.finish_reason]}],
            "usage": usage(result.prompt_tokens, len(result.tokens)), "system_fingerprint": None}


def chat_chunk(call_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def usage_chunk(call_id: str, created: int, model: str, obj: str, result: GenerationResult) -> dict[str, Any]:
    return {"id": call_id, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage(result.prompt_tokens, len(result.tokens))}


def completion(result: GenerationResult, call_id: str, logprobs: bool, top: int) -> dict[str, Any]:
    return {"id": call_id, "object": "text_completion", "created": int(time.time()), "model": result.model,
            "choices": [{"index": 0, "text": result.text,
                         "logprobs": completion_logprobs(result.tokens, top) if logprobs else None,
                         "finish_reason": FINISH[result.finish_reason]}],
            "usage": usage(result.prompt_tokens, len(result.tokens)), "system_fingerprint": None}


def completion_chunk(call_id: str, created: int, model: str, text: str, finish: str | None = None,
                     logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": call_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]}


def embeddings(model: str, vectors: np.ndarray, fmt: str, tokens: int) -> dict[str, Any]:
    """``vectors`` (n, dim) float32; base64 is the little-endian float32 bytes, as OpenAI sends them."""
    def encode(v: np.ndarray) -> Any:
        return base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()

    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def transcription(transcript: Any, fmt: str) -> tuple[str, Any]:
    """(media type, body) of a transcript in ``fmt``: json, text, srt, vtt or verbose_json (with segments)."""
    segments = clean_segments(transcript.segments)
    if fmt == "text":
        return "text/plain; charset=utf-8", transcript.text + "\n"
    if fmt == "srt":
        return "text/plain; charset=utf-8", to_srt(segments)
    if fmt == "vtt":
        return "text/vtt; charset=utf-8", to_vtt(segments)
    if fmt == "json":
        return "application/json", {"text": transcript.text}
    return "application/json", {
        "task": "translate" if transcript.task == "translate" else "transcribe",
        "language": transcript.language_name.lower(), "duration": transcript.duration_s, "text": transcript.text,
        "segments": [_segment(i, s) for i, s in enumerate(segments)],
    }


def _segment(index: int, s: Segment) -> dict[str, Any]:
    return {"id": index, "seek": int(s.start * 100), "start": s.start, "end": s.end, "text": s.text}
