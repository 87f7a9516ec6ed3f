"""Typed errors raised by the engine.

Every error the engine raises on purpose is an :class:`EngineError`. Its message is written for the person
using the app: it says what went wrong and what to do next. The UI turns these into visible messages at one
boundary (``apps/common.py``); anything else is a bug and is logged with its traceback.
"""
from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose; the message is meant for the user."""


class UnknownModelError(EngineError, KeyError):
    """A model or task name that the registry does not know."""

    def __init__(self, name: str, available: list[str] | tuple[str, ...], what: str = "model") -> None:
        self.name = name
        self.available = tuple(available)
        listing = ", ".join(self.available) if self.available else "none"
        super().__init__(f"Unknown {what} {name!r}. Available: {listing}.")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class InvalidInputError(EngineError, ValueError):
    """Input the engine cannot work with: empty text, undecodable audio, mismatched files and the like."""


class InvalidOptionsError(InvalidInputError):
    """An option outside its allowed range, or options that contradict each other."""


class InputTooLargeError(InvalidInputError):
    """Input beyond a configured limit (characters, seconds of audio, bytes of upload)."""


class ModelUnavailableError(EngineError, RuntimeError):
    """The model's weights are not on disk and cannot be fetched (offline, or no network)."""


class ModelLoadError(EngineError, RuntimeError):
    """The weights were found but could not be loaded (a corrupt or incompatible file)."""


class CancelledError(EngineError):
    """The request was cancelled before it finished; its compute has stopped."""


class BusyError(EngineError, RuntimeError):
    """The engine's queue for a model is full; the caller should try again shortly."""


class RemoteServerError(ModelUnavailableError):
    """A model served by another server (an ``openai:`` source) could not answer: the server is unreachable, timed
    out, refused the key, does not have the model, failed, or cut its stream. The message names the server and what
    to check."""
