"""OpenAI's HTTP API (``/v1``) on the app's own server: the same engine, process and port as the UI.

    demo.launch(..., app_kwargs=api.app_kwargs(engine, api_key))   # what app.py does

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/audio/transcriptions`` and ``/v1/audio/translations``. Any client of OpenAI's API works against it::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:7860/v1", api_key="unused-on-loopback")
    for chunk in client.chat.completions.create(model="SmolLM2-135M-Instruct", stream=True,
                                                messages=[{"role": "user", "content": "Hi!"}]):
        print(chunk.choices[0].delta.content or "", end="")

This package imports no ``openai`` package: it speaks the protocol with the web framework gradio already brings.
"""
from __future__ import annotations

from typing import Any

from engine import Engine

from .routes import OpenAIApi

__all__ = ["OpenAIApi", "app_kwargs"]


def app_kwargs(engine: Engine, api_key: str | None = None) -> dict[str, Any]:
    """Keyword arguments for the app's FastAPI application (gradio's ``launch(app_kwargs=...)``) that add the
    ``/v1`` routes, ahead of gradio's own."""
    return {"routes": OpenAIApi(engine, api_key).routes()}
