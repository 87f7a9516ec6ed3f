"""The assembled app: every tab builds on one engine, it serves on loopback, and the Engine tab's endpoints work
through gradio_client as a script user would call them."""
from __future__ import annotations

import pytest
from gradio_client import Client

import app as app_module
from app_process import free_port
from engine import Engine, Settings


@pytest.fixture(scope="module")
def running_app(tmp_path_factory):
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True))
    demo = app_module.build_app(engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield engine, Client(f"http://127.0.0.1:{port}/", verbose=False)
    demo.close()
    engine.close()


def test_defaults_bind_to_loopback_on_7860(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app_module.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)


def test_flags_override_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_LAB_CONCURRENCY", "3")
    args = app_module.parse_args(["--concurrency", "5", "--memory-budget-gb", "1.5"])
    settings = app_module.settings_from(args)
    assert settings.concurrency == 5 and settings.memory_budget_bytes == int(1.5 * 2**30)


def test_engine_tab_shows_device_and_unloads(running_app):
    engine, client = running_app
    engine.embed("load one model")
    status, loaded, _, registry = client.predict(api_name="/engine_status")
    assert engine.policy.device in status and engine.policy.dtype_name in status
    from engine.weights import packing_available  # fp32 generation on a CPU that can: weights packed for oneDNN
    packed = engine.policy.device == "cpu" and packing_available() and not engine.settings.compile
    assert ("packed once for oneDNN" in status) == (packed and "Generation weights:** `fp32" in status)
    assert [row[0] for row in loaded["data"]] == ["all-MiniLM-L6-v2"]
    assert any(row[0] == "SmolLM2-135M-Instruct" for row in registry["data"])
    status, loaded, _, _ = client.predict(name="all-MiniLM-L6-v2", api_name="/unload_model")
    assert loaded["data"] == [] and engine.status().loaded == ()


def test_unloading_nothing_is_a_clear_message(running_app):
    _, client = running_app
    with pytest.raises(Exception, match="Pick a loaded model"):
        client.predict(name=None, api_name="/unload_model")
