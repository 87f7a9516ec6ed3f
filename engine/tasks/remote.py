"""Text generation by a model that runs elsewhere, behind an OpenAI-compatible server: vLLM (tensor and pipeline
parallel across GPUs and nodes), llama.cpp's ``llama-server``, TGI, Ollama... A registry entry with an ``openai:``
source makes one; ``engine.generate``, ``engine.stream``, ``engine.next_token`` (so the Text generation tab, the LLM
fallbacks of the other tabs and the app's own ``/v1`` API) then use it, with the same result types as a local model::

    [[models]]
    name = "llama-70b"                         # the name users see
    task = "text-generation"
    family = "openai-compatible"
    source = "openai:http://10.0.0.5:8000/v1"  # the server's base URL
    remote_model = "meta-llama/Llama-3.3-70B-Instruct"   # its name there (default: name)
    api_key_env = "VLLM_API_KEY"               # the variable holding its key, if it needs one
    chat = true                                # send conversations to /chat/completions (else /completions)

The served object keeps the engine's shape: requests reach it through its worker's queue (a full queue is "busy"),
and ``run_batch`` dispatches each one to its own HTTP stream, up to ``max_batch`` at once, taking more as they arrive
(the server batches them). Each step the server streams becomes a :class:`TokenStep` with the probabilities the
server reports (``logprobs``/``top_logprobs``); a cancelled request (Stop, a closed stream) closes its HTTP stream,
which stops the server's work too. Every failure of the server becomes a :class:`RemoteServerError` whose message
names the server and says what to check; it fails that request only.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Iterator

import numpy as np
import torch

from ..errors import BusyError, InvalidOptionsError, RemoteServerError
from ..registry import ModelSpec
from ..worker import More, Request
from .generation import (ALTERNATIVES, MAX_TOP_K, Alternative, GenerationOptions, GenerationPayload,
                         GenerationResult, LensPayload, NextTokenDistribution, Prepared, Prompt, TokenProb, TokenStep,
                         chat_messages)
from .sampling import reshaped_distribution

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # a server that does not accept the connection this fast is reported as unreachable
READ_TIMEOUT_S = 120.0  # the longest wait for the next piece of a reply (a long prompt's prefill included)
POLL_S = 0.01  # how often the dispatcher looks for new requests and cancels while streams run
MAX_SERVER_LOGPROBS = 20  # what OpenAI (and vLLM by default) allow as top_logprobs
ERROR_BODY_CHARS = 300
#: parameters a server may not know: vLLM's and llama-server's extensions, and logprobs (not every server has them)
OPTIONAL_PARAMS = ("top_k", "repetition_penalty", "repeat_penalty", "logprobs", "top_logprobs", "stream_options")


@dataclasses.dataclass(frozen=True)
class RemotePrompt(Prepared):
    """A prompt for the server: the text (completions) or the conversation (chat); the server tokenizes it."""

    content: Any = None


def _bits(probs: list[float]) -> float:
    """Entropy in bits of the known probabilities plus one bucket for the mass the server did not report: a lower
    bound of the model's entropy (the exact value needs the whole vocabulary)."""
    rest = max(0.0, 1.0 - sum(probs))
    return float(-sum(p * math.log2(p) for p in [*probs, rest] if p > 0))


class RemoteLM:
    """A model behind an OpenAI-compatible server, with the engine's served-model shape."""

    joins = True  # requests that arrive while others stream start at once (see run_batch)
    nbytes = 0  # its weights live on the server
    has_template = False  # the server applies its chat template: code that formats one itself sends plain text

    def __init__(self, spec: ModelSpec, max_batch: int = 16, read_timeout_s: float | None = None) -> None:
        import httpx

        self.spec, self.max_batch = spec, max_batch
        self.base_url = spec.location.rstrip("/")
        self.remote_model = spec.remote_model or spec.name
        self.where = f"the server at {self.base_url} (model {self.remote_model!r})"
        headers = {}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise RemoteServerError(f"Model {spec.name!r}: the environment variable {spec.api_key_env} that "
                                        f"should hold the key for {self.base_url} is not set. Set it before "
                                        "starting the app, or remove api_key_env from the model's entry.")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(
            read_timeout_s or READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=max_batch + 4))
        self._streams: dict[int, Any] = {}  # request id -> its open HTTP response, closed on cancel
        self._lock = threading.Lock()
        self.tokenizer_lock = threading.Lock()  # as a local model has; see ``tokenizer``
        self._wake = threading.Event()
        info = self._describe()
        meta = info.get("meta") or {}
        self.vocab_size = int(meta.get("n_vocab") or MAX_TOP_K)  # llama-server says; others do not
        self.vocab_known = bool(meta.get("n_vocab"))
        self.context = int(meta.get("n_ctx_train") or info.get("max_model_len") or 0) or None
        self.logprobs = True  # until the server refuses them
        self.refused: set[str] = set()  # optional parameters the server refused: not sent again

    # --- talking to the server ----------------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        """The server's entry for our model (``GET /models``), checking that it is reachable and has the model."""
        response = self._call(lambda: self.client.get("/models"))
        try:
            models = response.json()["data"]
        except (ValueError, KeyError, TypeError) as e:
            raise RemoteServerError(f"Model {self.spec.name!r}: {self.base_url}/models did not answer with "
                                    "OpenAI's model list. Is the base URL right (it usually ends in /v1)?") from e
        for entry in models:
            if isinstance(entry, dict) and entry.get("id") == self.remote_model:
                return entry
        names = ", ".join(str(m.get("id")) for m in models if isinstance(m, dict)) or "none"
        raise RemoteServerError(f"Model {self.spec.name!r}: the server at {self.base_url} has no model called "
                                f"{self.remote_model!r}; it has {names}. Set remote_model in the model's entry to "
                                "one of those.")

    def _call(self, send: Any) -> Any:
        """``send()`` with the server's failures as :class:`RemoteServerError` (or busy, or bad options)."""
        import httpx

        try:
            response = send()
        except httpx.ConnectError as e:
            raise RemoteServerError(f"Could not connect to {self.where}: {e}. Is the server running, and is the "
                                    "base URL in the model's entry right?") from e
        except httpx.TimeoutException as e:
            raise RemoteServerError(f"{self.where} did not answer in time ({type(e).__name__}). It may be "
                                    "overloaded or stuck: check its log, or try again.") from e
        except httpx.HTTPError as e:
            raise RemoteServerError(f"The connection to {self.where} failed: {type(e).__name__}: {e}.") from e
        self._check_status(response)
        return response

    def _check_status(self, response: Any) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            detail = response.read().decode("utf-8", "replace")
            parsed = json.loads(detail)
            error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
            detail = error.get("message", detail) if isinstance(error, dict) else str(error)
        except (ValueError, AttributeError):
            pass
        detail = " ".join(str(detail).split())[:ERROR_BODY_CHARS]
        if status in (401, 403):
            how = (f"check the key in the environment variable {self.spec.api_key_env}" if self.spec.api_key_env
                   else "it needs a key: set api_key_env in the model's entry to the variable that holds it")
            raise RemoteServerError(f"{self.where} refused the request ({status}: {detail}): {how}.")
        if status == 404:
            raise RemoteServerError(f"{self.where} answered 404 ({detail}). Check remote_model (the server's name "
                                    "for the model) and the base URL.")
        if status in (429, 503):
            raise BusyError(f"{self.where} is busy ({status}: {detail}). Try again in a moment.")
        if status in (400, 422):
            raise InvalidOptionsError(f"{self.where} refused the request's options ({status}: {detail}).")
        raise RemoteServerError(f"{self.where} failed with {status}: {detail}. Check the server's log.")

    def _body(self, prompt: RemotePrompt, options: GenerationOptions, seed: int | None, *, stream: bool,
              top: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.remote_model, "max_tokens": options.max_new_tokens,
                                "temperature": options.temperature, "top_p": options.top_p, "stream": stream}
        if prompt.chat:
            body["messages"] = prompt.content
            if top and self.logprobs:
                body.update(logprobs=True, top_logprobs=top)
        else:
            body["prompt"] = prompt.content
            if top and self.logprobs:
                body["logprobs"] = top
        if options.stop:
            body["stop"] = list(options.stop)
        if seed is not None:
            body["seed"] = seed
        if options.top_k:  # extensions that vLLM and llama-server read; sent only when they change something
            body["top_k"] = options.top_k
        if options.repetition_penalty != 1:
            body["repetition_penalty"] = body["repeat_penalty"] = options.repetition_penalty
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _post_stream(self, path: str, body: dict[str, Any]) -> Any:
        """An open streaming response. A server that refuses one of the optional parameters (the extensions, or
        logprobs) is asked again without it, and is not sent it again."""
        for key in self.refused:
            body.pop(key, None)
        while True:
            try:
                return self._call(lambda: self.client.send(self.client.build_request("POST", path, json=body),
                                                           stream=True))
            except InvalidOptionsError as e:
                named = _refused_params(str(e), [k for k in OPTIONAL_PARAMS if k in body])
                if not named:
                    raise
                log.info("%s refuses %s; not sending it again", self.where, ", ".join(sorted(named)))
                if named & {"logprobs", "top_logprobs"}:
                    self.logprobs = False
                    named |= {"logprobs", "top_logprobs"}
                self.refused |= named
                for key in named:
                    body.pop(key, None)

    # --- the engine's side --------------------------------------------------------------------------------------
    def prepare(self, prompt: Prompt, max_new_tokens: int, chat: bool | None = None,
                system_prompt: str | None = None) -> RemotePrompt:
        """The text or the conversation to send (the server applies its chat template and tokenizes)."""
        use_chat = self.spec.chat if chat is None else bool(chat)
        notes = []
        if not use_chat and not isinstance(prompt, str):
            raise InvalidOptionsError("A conversation (a list of messages) needs chat mode; turn chat on, or give "
                                      "the text to continue.")
        if system_prompt and not use_chat:
            notes.append("The system prompt was not used: it only applies in chat mode.")
        if self.context and max_new_tokens >= self.context:
            raise InvalidOptionsError(f"max_new_tokens ({max_new_tokens}) must be less than {self.spec.name}'s "
                                      f"context of {self.context} tokens; choose at most {self.context - 1}.")
        content = chat_messages(prompt, system_prompt) if use_chat else prompt
        return RemotePrompt((), use_chat, tuple(notes), content)

    @property
    def tokenizer(self) -> Any:
        """Work that needs the model's token ids (zero-shot scoring of label words) cannot use a remote model."""
        raise InvalidOptionsError(f"{self.spec.name} runs on another server ({self.base_url}): its tokenizer is not "
                                  "here, so this needs a local text-generation model; pick one.")

    def token_text(self, token_id: int) -> str:
        return ""  # the server sends each token's text with it

    def batch_key(self, payload: Any) -> Hashable:
        return None

    def run_batch(self, requests: list[Request], more: More = lambda room: []) -> None:
        """Each request streams in its own thread; this (the worker's) thread starts them, takes the requests that
        arrive meanwhile (up to ``max_batch`` at once) and closes the streams of cancelled ones."""
        active: dict[Request, threading.Thread] = {}

        def start(request: Request) -> None:
            target = self._lens if isinstance(request.payload, LensPayload) else self._generate
            thread = threading.Thread(target=self._serve, args=(target, request), daemon=True,
                                      name=f"remote:{self.spec.name}:{request.id}")
            active[request] = thread
            thread.start()

        for request in requests:
            start(request)
        while active:
            self._wake.wait(POLL_S)
            self._wake.clear()
            for request, thread in list(active.items()):
                if request.cancelled:
                    self._close(request.id)
                if not thread.is_alive():
                    del active[request]
            if len(active) < self.max_batch:
                for request in more(self.max_batch - len(active)):
                    start(request)

    def _serve(self, target: Any, request: Request) -> None:
        try:
            request.finish(target(request))
        except Exception as e:  # the request's own failure; the others go on
            request.fail(e)
        finally:
            self._close(request.id)
            self._wake.set()

    def _close(self, request_id: int) -> None:
        with self._lock:
            response = self._streams.pop(request_id, None)
        if response is not None:
            response.close()  # the reading thread sees the end at once; the server stops generating

    def _events(self, request: Request, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON events of one streamed reply, until ``[DONE]``; a reply cut short is an error."""
        import httpx

        response = self._post_stream(path, body)
        with self._lock:
            self._streams[request.id] = response
        if request.cancelled:  # cancelled while connecting
            self._close(request.id)
            return
        done = False
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError as e:
                    raise RemoteServerError(f"{self.where} sent a malformed event in its stream "
                                            f"({data[:80]!r}). Is it an OpenAI-compatible server?") from e
                if isinstance(event, dict) and event.get("error"):
                    error = event["error"]
                    message = error.get("message", error) if isinstance(error, dict) else error
                    raise RemoteServerError(f"{self.where} failed during the reply: {message}")
                yield event
        except RemoteServerError:
            raise
        except httpx.TimeoutException as e:
            if request.cancelled:
                return
            raise RemoteServerError(f"{self.where} did not answer in time: nothing came for "
                                    f"{self.client.timeout.read:g} s in the middle of the reply. It may be "
                                    "overloaded or stuck: check its log, or try again.") from e
        except (httpx.HTTPError, RuntimeError) as e:  # RuntimeError: httpx's "stream closed" after our close
            if request.cancelled:
                return
            raise RemoteServerError(f"The stream from {self.where} was cut before the reply was complete "
                                    f"({type(e).__name__}). Check that the server is still running.") from e
        finally:
            self._close(request.id)
        if not done and not request.cancelled:
            raise RemoteServerError(f"The stream from {self.where} ended before the reply was complete. Check "
                                    "that the server is still running, and its log.")

    def _generate(self, request: Request) -> GenerationResult:
        payload: GenerationPayload = request.payload
        prompt: RemotePrompt = payload.prepared  # type: ignore[assignment]
        options = payload.options
        path = "/chat/completions" if prompt.chat else "/completions"
        body = self._body(prompt, options, payload.seed, stream=True, top=ALTERNATIVES)
        started = time.perf_counter()
        steps: list[TokenStep] = []
        text, finish, prompt_tokens, probs_seen = "", None, 0, False
        for event in self._events(request, path, body):
            if event.get("usage"):
                prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") if prompt.chat else choice.get("text")
                piece = piece or ""
                entries = _token_entries(choice.get("logprobs"), prompt.chat)
                probs_seen |= bool(entries)
                if not entries and piece:
                    entries = [(piece, math.nan, ())]
                for i, (token, prob, alternatives) in enumerate(entries):
                    last = i == len(entries) - 1
                    known = [a.prob for a in alternatives]
                    step = TokenStep(len(steps), -1, token, piece if last else "", prob,
                                     _bits(known) if known else math.nan, alternatives)
                    steps.append(step)
                    request.emit(step)
                text += piece
                finish = choice.get("finish_reason") or finish
        notes = list(prompt.notes)
        if steps and not probs_seen:
            notes.append(f"{self.where} did not report token probabilities, so none are shown.")
        # OpenAI's "stop" covers both the end-of-text token and a stop sequence: with stop sequences asked for,
        # it is reported as "stop", else as "eos"
        reason = ("cancelled" if request.cancelled else "length" if finish == "length"
                  else "stop" if options.stop else "eos")
        return GenerationResult(self.spec.name, text, tuple(steps), reason, prompt_tokens, prompt.chat,
                                payload.seed, options, tuple(notes), time.perf_counter() - started)

    def _lens(self, request: Request) -> NextTokenDistribution:
        """P(next token): one token at temperature 1 with the server's top log probabilities, reshaped here."""
        payload: LensPayload = request.payload
        prompt: RemotePrompt = payload.prepared  # type: ignore[assignment]
        if not self.logprobs:
            raise RemoteServerError(f"{self.where} does not report token probabilities (logprobs), so the "
                                    "next-token lens cannot show its distribution. Generation still works.")
        show = min(payload.show, MAX_SERVER_LOGPROBS)
        raw = GenerationOptions(max_new_tokens=1, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
        body = self._body(prompt, raw, 0, stream=True, top=show)
        entries, prompt_tokens = [], 0
        for event in self._events(request, "/chat/completions" if prompt.chat else "/completions", body):
            if event.get("usage"):
                prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
            for choice in event.get("choices") or []:
                entries += _token_entries(choice.get("logprobs"), prompt.chat, show)
        if not entries or not entries[0][2]:
            raise RemoteServerError(f"{self.where} did not report the next token's probabilities (top_logprobs), "
                                    "so the next-token lens cannot show its distribution. Generation still works.")
        return _distribution(self, entries[0][2], payload, prompt_tokens, show)


def _refused_params(message: str, sent: list[str]) -> set[str]:
    """Which of the optional parameters ``sent`` a server's refusal names: those it quotes, else the first one it
    mentions (a message may go on to list what the server does accept)."""
    quoted = {k for k in sent if re.search(rf"""['"`]{k}['"`]""", message)}
    if quoted:
        return quoted
    found = sorted((m.start(), k) for k in sent if (m := re.search(rf"\b{k}\b", message)))
    return {found[0][1]} if found else set()


def _token_entries(logprobs: Any, chat: bool, top: int = ALTERNATIVES) -> list[tuple[str, float,
                                                                                    tuple[Alternative, ...]]]:
    """(token, probability, alternatives) for each token of a chunk's ``logprobs``, chat or completions shape."""
    if not isinstance(logprobs, dict):
        return []
    out = []
    if chat or "content" in logprobs:
        for item in logprobs.get("content") or []:
            alternatives = tuple(Alternative(int(a.get("id", -1)), a.get("token", ""), math.exp(a["logprob"]))
                                 for a in (item.get("top_logprobs") or [])[:top] if a.get("logprob") is not None)
            out.append((item.get("token", ""), math.exp(item.get("logprob", -math.inf)), alternatives))
        return out
    for token, lp, tops in zip(logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [],
                               logprobs.get("top_logprobs") or []):
        ranked = sorted((tops or {}).items(), key=lambda kv: -kv[1])[:top]
        out.append((token, math.exp(lp) if lp is not None else math.nan,
                    tuple(Alternative(-1, t, math.exp(v)) for t, v in ranked)))
    return out


def _distribution(served: RemoteLM, alternatives: tuple[Alternative, ...], payload: LensPayload, prompt_tokens: int,
                  show: int) -> NextTokenDistribution:
    """The lens from the server's top tokens. The rest of the vocabulary is one bucket ("other"); the arrays are
    the top tokens followed by that bucket spread evenly over the tokens not reported (their shares are unknown),
    so they sum to 1 and temperature / top-k / top-p reshape them as they would the model's."""
    o = payload.options
    known = np.array([a.prob for a in alternatives], dtype=np.float64)
    vocab = max(served.vocab_size, len(known) + 1)
    rest = max(0.0, 1.0 - float(known.sum()))
    probs = np.full(vocab, rest / (vocab - len(known)), dtype=np.float64)
    probs[:len(known)] = known
    probs /= probs.sum()
    logits = torch.from_numpy(np.log(np.maximum(probs, 1e-300)))[None]
    shaped = reshaped_distribution(logits, o)[0].numpy().astype(np.float64)
    top = tuple(TokenProb(a.token_id, a.token, float(probs[i]), float(shaped[i]))
                for i, a in enumerate(alternatives))
    with np.errstate(divide="ignore", invalid="ignore"):
        shaped_entropy = float(-np.sum(np.where(shaped > 0, shaped * np.log2(shaped), 0.0)))
    size = f"{vocab:,} tokens, as the server says" if served.vocab_known else "its size is not reported"
    notes = [f"{served.where} reports its {len(top)} most likely tokens; the rest of the vocabulary ({size}) is "
             "spread evenly here, so the entropies are estimates."]
    if payload.show > show:
        notes.append(f"At most {MAX_SERVER_LOGPROBS} tokens can be shown for a model on another server.")
    return NextTokenDistribution(
        served.spec.name, prompt_tokens, top, float(probs[len(top):].sum()), float(shaped[len(top):].sum()),
        _bits(list(known)), shaped_entropy, o.temperature, o.top_k, o.top_p, probs, shaped,
        tuple(payload.prepared.notes) + tuple(notes))


def load(spec: ModelSpec, files: Path | None, engine: "Engine") -> RemoteLM:
    """Connect to the server and check that it has the model (nothing is downloaded)."""
    return RemoteLM(spec, engine.settings.max_batch)
