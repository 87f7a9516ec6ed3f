"""The training foundation: one run at a time in the training worker, stop keeps the last event, and trained-model
folders that register, survive a restart (a new Engine on the same cache) and can be deleted."""
from __future__ import annotations

import threading
import time

import pytest

from engine import BusyError, Engine, InvalidInputError, InvalidOptionsError, Settings, UnknownModelError
from engine.training.store import Card, check_model_name


def counting_job(steps: int, started: threading.Event | None = None, pause: float = 0.0):
    def job(should_stop):
        for step in range(steps):
            if started is not None:
                started.set()
            if should_stop():
                yield ("stopped", step)
                return
            time.sleep(pause)
            yield ("step", step)
        yield ("done", steps)
    return job


@pytest.fixture
def engine(tmp_path):
    e = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32"))
    yield e
    e.close()


def test_a_run_streams_its_events_to_the_end(engine):
    events = list(engine.start_training("counting", counting_job(5)))
    assert events == [("step", i) for i in range(5)] + [("done", 5)]
    assert engine.training.running is None


def test_a_second_run_is_refused_while_one_is_going_and_stop_ends_it(engine):
    started = threading.Event()
    run = engine.start_training("pretraining 'a'", counting_job(10_000, started, pause=0.001))
    assert started.wait(10)
    with pytest.raises(BusyError, match="pretraining 'a'"):
        engine.start_training("pretraining 'b'", counting_job(1))
    assert engine.training.running == "pretraining 'a'"
    first = next(run)
    assert first[0] == "step"
    run.stop()
    rest = list(run)
    assert rest[-1][0] == "stopped"  # the trainer saw the stop and said its last word
    assert len(rest) < 10_000
    assert list(engine.start_training("after", counting_job(2)))[-1] == ("done", 2)  # the slot is free again


def test_closing_the_iterator_stops_the_run(engine):
    started = threading.Event()
    run = engine.start_training("closing", counting_job(100_000, started, pause=0.001))
    next(run)
    run.close()
    deadline = time.monotonic() + 10
    while engine.training.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.training.running is None


def test_engine_cancel_by_id_stops_a_run(engine):
    run = engine.start_training("by id", counting_job(100_000, pause=0.001))
    next(run)
    assert engine.cancel(run.id)
    assert list(run)[-1][0] == "stopped"


def test_trainer_errors_reach_the_caller(engine):
    def failing(should_stop):
        yield 1
        raise InvalidOptionsError("block_size must be at most 64")

    run = engine.start_training("failing", failing)
    with pytest.raises(InvalidOptionsError, match="block_size"):
        list(run)
    assert engine.training.running is None


def _publish_tiny(engine, tiny_gpt2, name):
    import shutil

    staging = engine.trained.staging(name)
    for f in tiny_gpt2.iterdir():
        shutil.copy(f, staging / f.name)
    card = Card(name, "text-generation", "causal-lm", "pretrained from scratch", "A tiny GPT", settings={"n_layer": 1},
                metrics={"val_loss": 3.2}, created="2026-12-04T00:00:00+00:00")
    return engine.trained.publish(staging, card)


def test_published_models_register_survive_a_restart_and_delete(tmp_path, tiny_gpt2):
    settings = Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32")
    first = Engine(settings)
    spec = _publish_tiny(first, tiny_gpt2, "my-gpt")
    assert spec.source == f"path:{tmp_path / 'trained' / 'my-gpt'}"
    assert first.generate("hello", model="my-gpt", max_new_tokens=3, temperature=0).model == "my-gpt"
    first.close()

    second = Engine(settings)  # a restart: found again from its folder
    assert [c.name for c in second.trained_models("text-generation")] == ["my-gpt"]
    assert second.trained_models()[0].metrics == {"val_loss": 3.2}
    assert "my-gpt" in [s.name for s in second.registry.for_task("generation")]
    again = _publish_tiny(second, tiny_gpt2, "my-gpt")  # the same name replaces it
    assert again.name == "my-gpt" and len(second.trained_models()) == 1
    second.delete_model("my-gpt")
    assert "my-gpt" not in second.registry.names()
    assert not (tmp_path / "trained" / "my-gpt").exists()
    with pytest.raises(UnknownModelError):
        second.generate("hello", model="my-gpt")
    second.close()


def test_names_and_deletes_are_checked(engine):
    with pytest.raises(InvalidOptionsError, match="built-in"):
        check_model_name("SmolLM2-135M-Instruct", engine.registry, engine.trained)
    for bad in ("", "a b", "../x", "x" * 65, None, 3):
        with pytest.raises(InvalidOptionsError, match="name must be"):
            check_model_name(bad, engine.registry, engine.trained)
    assert check_model_name(" ok-name_1.2 ", engine.registry, engine.trained) == "ok-name_1.2"
    with pytest.raises(InvalidInputError, match="built-in"):
        engine.delete_model("SmolLM2-135M-Instruct")
    with pytest.raises(UnknownModelError):
        engine.delete_model("never-trained")


def test_a_broken_folder_is_skipped(tmp_path):
    (tmp_path / "trained" / "broken").mkdir(parents=True)
    (tmp_path / "trained" / "broken" / "card.json").write_text("{not json")
    engine = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu"))
    assert engine.trained_models() == []
    engine.close()


def test_engine_methods_show_their_real_signatures():
    """help(engine.generate) and an editor's completion show the task function's arguments, not *args/**kwargs."""
    import inspect

    engine = Engine.__new__(Engine)
    params = inspect.signature(engine.generate).parameters
    assert list(params)[:2] == ["prompt", "model"] and "system_prompt" in params
    assert "max_iters" in (Engine.pretrain.__doc__ or "") or "name" in inspect.signature(engine.pretrain).parameters
    assert "k" in inspect.signature(engine.neighbours).parameters
