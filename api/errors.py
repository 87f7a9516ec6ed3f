"""OpenAI's error shape, and how the engine's typed errors map onto HTTP statuses.

Every error the API answers is ``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI uses for
the same case, so the ``openai`` client raises its matching exception (``NotFoundError``, ``BadRequestError``,
``AuthenticationError``, ``RateLimitError``...).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from starlette.responses import JSONResponse

from engine import (BusyError, CancelledError, EngineError, InputTooLargeError, InvalidInputError, ModelLoadError,
                    ModelUnavailableError, UnknownModelError)
from engine.errors import RemoteServerError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # what a busy answer tells the client to wait before it tries again
#: engine option names -> the API parameter a client sent for them
ENGINE_PARAMS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                 "seed": "seed", "repetition_penalty": "repetition_penalty", "stop": "stop"}


class ApiError(Exception):
    """An answer in OpenAI's error shape: ``ApiError(400, "n must be 1", param="n")``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 502: "server_error", 503: "server_error"}


def bad_param(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def from_engine(error: BaseException, param_names: dict[str, str] | None = None) -> ApiError:
    """The API answer for an error the engine raised (anything that is not an :class:`EngineError` is a bug: it is
    logged with its traceback and answered with a short 500)."""
    if isinstance(error, ApiError):
        return error
    message = str(error)
    if isinstance(error, UnknownModelError):
        return ApiError(404, message, param="model", code="model_not_found")
    if isinstance(error, BusyError):
        return ApiError(429, message, code="rate_limit_exceeded", headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, InputTooLargeError):
        return ApiError(413 if "upload" in message.lower() or "bytes" in message.lower() else 400, message,
                        code="input_too_large")
    if isinstance(error, InvalidInputError):
        names = {**ENGINE_PARAMS, **(param_names or {})}
        first = re.match(r"(?:Each )?(\w+)", message)
        param = names.get(first.group(1)) if first else None
        return ApiError(400, message, param=param, code="invalid_value")
    if isinstance(error, RemoteServerError):  # the model's own server failed: a bad gateway, as proxies say
        return ApiError(502, message, code="upstream_error")
    if isinstance(error, ModelUnavailableError):
        return ApiError(503, message, param="model", code="model_unavailable")
    if isinstance(error, ModelLoadError):
        return ApiError(500, message, param="model", code="model_load_failed")
    if isinstance(error, CancelledError):
        return ApiError(499, message, code="cancelled", type="cancelled")
    if isinstance(error, EngineError):
        return ApiError(500, message)
    log.error("unexpected error in an API request", exc_info=error)
    return ApiError(500, "Something went wrong on our side; it has been logged. Try again.", code="internal_error")
