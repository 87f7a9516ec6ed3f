"""Safety: the app listens on loopback unless told otherwise, refuses oversized uploads and files it did not receive,
loads only registered models (unless the operator allows custom ones), and never runs code from a model repository.

Temporary files are checked in ``test_hostile_inputs.py`` (an API session leaves nothing of ours behind) and in
``browser/test_temp_files.py`` (the download files of the UI).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from gradio_client import Client

from app_process import ROOT, files_under, running_app
from engine import Engine, ModelUnavailableError, Settings, UnknownModelError
from engine.registry import BUILTIN_MODELS, TASK_FAMILIES, custom_spec

UPLOAD_LIMIT_MB = 1
CODE = [ROOT / "app.py", ROOT / "engine", ROOT / "apps", ROOT / "bench", ROOT / "scripts"]  # not tests/


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    env = {"LLM_LAB_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB)}
    with running_app(tmp_path_factory.mktemp("safety"), env=env) as app:
        yield app


# --- the network ---------------------------------------------------------------------------------------------------
def listening_addresses(port: int) -> list[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if int(port_hex, 16) == port and state == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def other_interface_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback."""
    if not shutil.which("ip"):
        return []
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", out) if not a.startswith("127.")]


def test_listens_on_loopback_only(app):
    assert listening_addresses(app.port) == ["0100007F"]  # 127.0.0.1, little-endian hex; no 0.0.0.0, no IPv6
    for address in other_interface_addresses():
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{address}:{app.port}/", timeout=5)


# --- uploads -------------------------------------------------------------------------------------------------------
def upload(url: str, name: str, data: bytes) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_oversized_uploads_are_refused_and_not_kept(app):
    before = files_under(app.gradio_temp)
    status, message = upload(app.url, "big.wav", b"\0" * (UPLOAD_LIMIT_MB * 2**20 + 1))
    assert status == 413 and "maximum allowed size" in message, (status, message)
    assert files_under(app.gradio_temp) == before, "the refused upload left a file behind"
    status, answer = upload(app.url, "small.wav", b"\0" * 1000)
    assert status == 200 and json.loads(answer)[0].endswith("small.wav")


def test_files_not_uploaded_by_a_user_are_refused(app):
    """A request naming a file on the server (not an upload) is refused before any code reads it."""
    for path in ("/etc/passwd", str(ROOT / "README.md")):
        payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "auto", "transcribe", None]}
        request = urllib.request.Request(f"{app.url}gradio_api/call/transcribe", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            event = json.load(response)["event_id"]
        with urllib.request.urlopen(f"{app.url}gradio_api/call/transcribe/{event}", timeout=60) as response:
            stream = response.read().decode()
        assert "event: error" in stream, stream
        assert "text file" not in stream  # our audio decoder never saw it
    assert "not uploaded by a user" in app.log()


# --- models --------------------------------------------------------------------------------------------------------
def test_the_ui_offers_registered_models_only(app):
    config = json.loads(urllib.request.urlopen(f"{app.url}config", timeout=30).read())
    # The registry as the app sees it: the built-in models and those trained on this machine (the same model cache),
    # which are registered models too; "auto" and "llm" pick among registered models.
    names = set(Engine(Settings.from_env()).registry.names()) | {"auto", "llm"}
    assert {s.name for s in BUILTIN_MODELS} <= names
    model_dropdowns = [c["props"] for c in config["components"]
                       if c["type"] == "dropdown" and "model" in str(c["props"].get("label", "")).lower()]
    assert len(model_dropdowns) >= 5  # one per model tab, and the Engine tab's unload
    for props in model_dropdowns:
        assert props["allow_custom_value"] is False, props["label"]
        offered = {choice[1] if isinstance(choice, (list, tuple)) else choice for choice in props["choices"]}
        assert offered <= names, f"{props['label']}: {offered - names}"


def test_the_api_refuses_names_not_in_the_registry(app):
    client = Client(app.url, verbose=False)
    for model in ("hub:someone/evil-model", "path:/etc", "../../etc/passwd"):
        with pytest.raises(Exception, match=rf"Unknown model '{re.escape(model)}'\. Available: SmolLM2-135M-Instruct"):
            client.predict(prompt="Hi", model=model, max_new_tokens=1, api_name="/generate")
    with pytest.raises(Exception, match=r"not in the list of choices"):  # a dropdown refuses what it did not offer
        client.predict(audio=None, model="hub:openai/whisper-large-v3", api_name="/transcribe")


def test_custom_models_are_off_by_default(tiny_causal_lm, tmp_path):
    engine = Engine(Settings(cache_dir=tmp_path, offline=True))
    assert engine.settings.allow_custom_models is False
    with pytest.raises(UnknownModelError, match=r"Available: SmolLM2-135M-Instruct"):
        engine.spec("text-generation", f"path:{tiny_causal_lm}")
    with pytest.raises(UnknownModelError):
        engine.generate("Hello", model=f"path:{tiny_causal_lm}", max_new_tokens=2)
    assert engine.status().loaded == ()


def test_an_operator_can_allow_custom_models(tiny_causal_lm, tmp_path):
    assert Settings.from_env({"LLM_LAB_ALLOW_CUSTOM_MODELS": "1"}).allow_custom_models
    engine = Engine(Settings(cache_dir=tmp_path, offline=True, allow_custom_models=True))
    name = f"path:{tiny_causal_lm}"
    spec = engine.spec("generation", name)
    assert (spec.name, spec.task, spec.family, spec.source) == (name, "text-generation", "causal-lm", name)
    result = engine.generate("Hello", model=name, max_new_tokens=3, temperature=0)
    assert result.model == name and len(result.tokens) >= 1
    assert [m.name for m in engine.status().loaded] == [name]
    with pytest.raises(ModelUnavailableError, match=r"offline"):  # a hub id: fetched only when online
        engine.generate("Hello", model="hub:someone/some-model", max_new_tokens=2)
    for other in ("whisper:base", "packaged:smollm2-135m-instruct", "no-such-model", "path:"):
        with pytest.raises(UnknownModelError):  # only hub ids and paths; other names as before
            engine.spec("text-generation", other)
    assert engine.spec("text-generation", "SmolLM2-135M-Instruct").source.startswith("packaged:")
    engine.close()


def test_custom_models_take_their_tasks_usual_family():
    for task, family in TASK_FAMILIES.items():
        spec = custom_spec(task, "hub:owner/name")
        assert (spec.task, spec.family, spec.source) == (task, family, "hub:owner/name")
    assert custom_spec("qa", "path:/models/squad").family == "extractive-qa"  # task aliases work
    assert custom_spec("text-generation", "gpt2") is None


# --- no code from model repositories --------------------------------------------------------------------------------
def python_files() -> list[Path]:
    return [p for root in CODE for p in ([root] if root.is_file() else root.rglob("*.py"))]


def test_no_code_enables_remote_code_or_unsafe_unpickling():
    offenders = []
    for path in python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"trust_remote_code\s*=\s*(?!False\b)", line) or re.search(r"weights_only\s*=\s*False", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert len(python_files()) > 20 and offenders == []


def test_loading_never_passes_trust_remote_code(monkeypatch, tmp_path, tiny_causal_lm, tiny_marian,
                                                tiny_distilbert_qa, tiny_distilbert_sst2):
    """Every ``from_pretrained`` that loading runs (models, tokenizers, configs) is watched while the engine loads one
    model of each transformers family."""
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    seen: list[tuple[str, dict]] = []

    def watch(owner) -> None:
        original = owner.__dict__["from_pretrained"].__func__

        def from_pretrained(cls, *args, **kwargs):
            seen.append((f"{cls.__name__}.from_pretrained", kwargs))
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", classmethod(from_pretrained))

    for owner in (transformers.PreTrainedModel, _BaseAutoModelClass, transformers.AutoTokenizer,
                  transformers.AutoConfig, transformers.PreTrainedTokenizerBase):
        watch(owner)

    from engine import ModelSpec, Registry

    registry = Registry()
    for name, task, family, folder in (("t-llm", "text-generation", "causal-lm", tiny_causal_lm),
                                       ("t-mt", "translation", "marian", tiny_marian),
                                       ("t-qa", "question-answering", "extractive-qa", tiny_distilbert_qa),
                                       ("t-sst2", "sentiment", "sequence-classification", tiny_distilbert_sst2)):
        registry.add(ModelSpec(name, task, family, f"path:{folder}", languages=("en", "de") if family == "marian"
                               else ()))
    engine = Engine(Settings(cache_dir=tmp_path, offline=True), registry)
    for task, name in (("text-generation", "t-llm"), ("translation", "t-mt"), ("question-answering", "t-qa"),
                       ("sentiment", "t-sst2")):
        engine.served(task, name)
    engine.close()
    called = {what for what, _ in seen}
    assert any("Tokenizer" in what for what in called) and any("Model" in what for what in called), called
    assert [(what, kw) for what, kw in seen if kw.get("trust_remote_code")] == []
