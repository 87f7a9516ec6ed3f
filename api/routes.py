"""The ``/v1`` routes: OpenAI's API on the app's own server and port, served by the same engine as the UI (so API
and UI requests share the model workers, and batch together).

Each handler checks access (:mod:`api.access`), checks the body (:mod:`api.params`), runs the engine in a worker
thread (the event loop never waits on a model) and answers in OpenAI's shapes (:mod:`api.responses`) or its error
shape (:mod:`api.errors`). A stream is an async generator of server-sent events that pulls the engine's steps one at
a time; when the client goes away the server cancels that generator, which cancels the engine request, so the model
stops at its next step (the Stop button's cancel).
"""
from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from engine import Engine, EngineError
from engine.registry import canonical_task
from engine.tasks.generation import GenerationResult, GenerationStream

from . import responses
from .access import check_access
from .errors import ApiError, from_engine
from .params import GenerationCall, audio_call, chat_call, completion_call, embedding_call

log = logging.getLogger(__name__)

GENERATION, EMBEDDING, SPEECH = "text-generation", "embedding", "speech-to-text"
API_TASKS = (GENERATION, EMBEDDING, SPEECH)
_END = object()
MAX_JSON_BYTES = 8 * 2**20  # far above any text the engine accepts (LLM_LAB_MAX_CHARS), far below harm


class OpenAIApi:
    """The handlers, bound to one engine and an optional API key."""

    def __init__(self, engine: Engine, api_key: str | None = None) -> None:
        self.engine, self.api_key = engine, api_key or None

    def routes(self) -> list[Route]:
        """Starlette routes for ``FastAPI(routes=...)`` (see :func:`api.app_kwargs`)."""
        return [
            Route("/v1/models", self._guard(self.list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", self._guard(self.get_model), methods=["GET"]),
            Route("/v1/chat/completions", self._guard(self.chat_completions), methods=["POST"]),
            Route("/v1/completions", self._guard(self.completions), methods=["POST"]),
            Route("/v1/embeddings", self._guard(self.embeddings), methods=["POST"]),
            Route("/v1/audio/transcriptions", self._guard(self.transcriptions), methods=["POST"]),
            Route("/v1/audio/translations", self._guard(self.translations), methods=["POST"]),
        ]

    def _guard(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Access check first; every error (ours, the engine's, or a bug) as OpenAI's error shape."""
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                check_access(request, self.api_key)
                return await handler(request)
            except Exception as e:  # the one boundary where errors become answers
                error = from_engine(e)
                if error.status >= 500:
                    log.warning("%s %s -> %d: %s", request.method, request.url.path, error.status, error.message)
                return error.response()

        return endpoint

    # --- models -------------------------------------------------------------------------------------------------
    def _model_entry(self, spec: Any) -> dict[str, Any]:
        return {"id": spec.name, "object": "model", "created": 0, "owned_by": "llm-lab", "task": spec.task,
                "default": spec.default}

    async def list_models(self, request: Request) -> Response:
        specs = [s for task in API_TASKS for s in self.engine.registry.for_task(task)]
        return JSONResponse({"object": "list", "data": [self._model_entry(s) for s in specs]})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        specs = {s.name: s for task in API_TASKS for s in self.engine.registry.for_task(task)}
        if name not in specs:
            raise ApiError(404, f"Unknown model {name!r}. Available: {', '.join(specs)}.", param="model",
                           code="model_not_found")
        return JSONResponse(self._model_entry(specs[name]))

    def _spec(self, task: str, model: str | None) -> Any:
        """The registry entry; an unknown name (or one of another task) is a 404 that lists this task's models."""
        try:
            return self.engine.spec(task, model)
        except EngineError as e:
            names = [s.name for s in self.engine.registry.for_task(canonical_task(task))]
            raise ApiError(404, f"Unknown {task} model {model!r}. Available: {', '.join(names)}.", param="model",
                           code="model_not_found") from e

    # --- text generation ------------------------------------------------------------------------------------------
    async def _body(self, request: Request) -> Any:
        """The JSON body, read up to :data:`MAX_JSON_BYTES` (a longer one is refused before it is all read)."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_JSON_BYTES:
                raise ApiError(413, f"The request body is larger than {MAX_JSON_BYTES // 2**20} MB; texts are "
                                    f"limited to {self.engine.settings.max_chars:,} characters.",
                               code="input_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise ApiError(400, "The request body must be JSON (Content-Type: application/json).") from None

    async def chat_completions(self, request: Request) -> Response:
        return await self._generation(chat_call(await self._body(request)), "chatcmpl")

    async def completions(self, request: Request) -> Response:
        return await self._generation(completion_call(await self._body(request)), "cmpl")

    async def _generation(self, call: GenerationCall, prefix: str) -> Response:
        spec = self._spec(GENERATION, call.model)
        kwargs = dict(model=spec.name, chat=call.chat, **call.options)
        call_id = responses.new_id(prefix)
        if not call.stream:
            result: GenerationResult = await run_in_threadpool(self.engine.generate, call.prompt, **kwargs)
            _log_result(call_id, result)
            build = responses.chat_completion if call.chat else responses.completion
            return JSONResponse(build(result, call_id, call.logprobs, call.top_logprobs))
        # Start it before answering 200, so that bad options and a full queue are still proper error answers.
        stream: GenerationStream = await run_in_threadpool(self.engine.stream, call.prompt, **kwargs)
        stream.request.future.add_done_callback(lambda f: _log_done(call_id, f))
        return StreamingResponse(self._events(stream, call, call_id, spec.name), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(self, stream: GenerationStream, call: GenerationCall, call_id: str,
                      model: str) -> AsyncIterator[bytes]:
        created = int(time.time())
        try:
            if call.chat:
                yield responses.sse(responses.chat_chunk(call_id, created, model, {"role": "assistant",
                                                                                    "content": ""}))
            while (step := await run_in_threadpool(next, stream, _END)) is not _END:
                if not step.text and not call.logprobs:
                    continue  # half a character, or text held back while it may be the start of a stop sequence
                if call.chat:
                    lp = responses.chat_logprobs([step], call.top_logprobs) if call.logprobs else None
                    chunk = responses.chat_chunk(call_id, created, model, {"content": step.text}, logprobs=lp)
                else:
                    lp = (responses.completion_logprobs([step], call.top_logprobs) if call.logprobs else None)
                    chunk = responses.completion_chunk(call_id, created, model, step.text, logprobs=lp)
                yield responses.sse(chunk)
            result = stream.result
            finish = responses.FINISH[result.finish_reason]
            if call.chat:
                yield responses.sse(responses.chat_chunk(call_id, created, model, {}, finish))
            else:
                yield responses.sse(responses.completion_chunk(call_id, created, model, "", finish))
            if call.include_usage:
                obj = "chat.completion.chunk" if call.chat else "text_completion"
                yield responses.sse(responses.usage_chunk(call_id, created, model, obj, result))
        except Exception as e:  # after the 200: the error travels as an event, as vLLM and OpenAI send it
            yield responses.sse(from_engine(e).body())
        finally:
            stream.cancel()  # a no-op once finished; when the client left, the model stops at its next step
        yield responses.sse("[DONE]")

    # --- embeddings ---------------------------------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        model, texts, fmt, dimensions = embedding_call(await self._body(request))
        spec = self._spec(EMBEDDING, model)
        result = await run_in_threadpool(self.engine.embed, texts, spec.name)
        if dimensions is not None and dimensions != result.vectors.shape[1]:
            raise ApiError(400, f"{spec.name} makes vectors of {result.vectors.shape[1]} dimensions; dimensions "
                                "must be that (or left out).", param="dimensions", code="invalid_value")
        tokens = await run_in_threadpool(self._count_tokens, spec.name, texts)
        return JSONResponse(responses.embeddings(spec.name, result.vectors, fmt, tokens))

    def _count_tokens(self, model: str, texts: list[str]) -> int:
        tokenizer = getattr(self.engine.served(EMBEDDING, model), "tokenizer", None)
        if tokenizer is None:
            return sum(len(t.split()) for t in texts)
        return sum(len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"])

    # --- speech -------------------------------------------------------------------------------------------------
    async def transcriptions(self, request: Request) -> Response:
        return await self._audio(request, translate=False)

    async def translations(self, request: Request) -> Response:
        return await self._audio(request, translate=True)

    async def _audio(self, request: Request, translate: bool) -> Response:
        limit = self.engine.settings.max_upload_bytes
        if int(request.headers.get("content-length") or 0) > limit + 1_000_000:
            raise ApiError(413, f"The upload is larger than this server's limit of {limit // 2**20} MB "
                                "(LLM_LAB_MAX_UPLOAD_MB).", param="file", code="input_too_large")
        try:
            async with request.form() as form:
                call = audio_call(form, translate)
                data = await form["file"].read()
        except (MultiPartException, AssertionError, ValueError) as e:  # not a readable multipart form
            raise ApiError(400, f"Send the recording as multipart/form-data with a 'file' field ({e}).",
                           param="file") from e
        if not data:
            raise ApiError(400, "The uploaded file is empty.", param="file")
        spec = self._spec(SPEECH, call.model)
        transcript = await run_in_threadpool(self.engine.transcribe, data, spec.name, language=call.language,
                                             task="translate" if translate else "transcribe")
        media, body = responses.transcription(transcript, call.response_format)
        if isinstance(body, str):
            return PlainTextResponse(body, media_type=media)
        return JSONResponse(body)


def _log_result(call_id: str, result: GenerationResult) -> None:
    log.info("%s: %s, %d prompt + %d new tokens, finish %s", call_id, result.model, result.prompt_tokens,
             len(result.tokens), result.finish_reason)


def _log_done(call_id: str, future: Any) -> None:
    if future.cancelled() or future.exception() is not None:
        log.info("%s: ended with %s", call_id, "cancel" if future.cancelled() else type(future.exception()).__name__)
    else:
        _log_result(call_id, future.result())
