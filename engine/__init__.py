"""LLM Lab's shared inference engine: a library, usable from Python without the UI (it never imports gradio).

    >>> from engine import Engine
    >>> engine = Engine()                       # settings from the environment (see engine.config.Settings)
    >>> engine.generate("The capital of France is", max_new_tokens=8).text
    >>> engine.transcribe("speech.wav").text
"""
from .config import Settings
from .core import Engine, EngineStatus
from .device import DevicePolicy, choose_device
from .errors import (BusyError, CancelledError, EngineError, InputTooLargeError, InvalidInputError,
                     InvalidOptionsError, ModelLoadError, ModelUnavailableError, RemoteServerError, UnknownModelError)
from .registry import TASKS, ModelSpec, Registry

__all__ = ["Engine", "EngineStatus", "Settings", "DevicePolicy", "choose_device", "ModelSpec", "Registry", "TASKS",
           "EngineError", "UnknownModelError", "InvalidInputError", "InvalidOptionsError", "InputTooLargeError",
           "ModelUnavailableError", "RemoteServerError", "ModelLoadError", "CancelledError", "BusyError"]
