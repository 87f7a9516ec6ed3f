"""Pretraining (issue 11): options checked before any compute, the data pipeline, the learning-rate schedule, a tiny
GPT that learns a tiny text, its round trip through the registry (saved, found after a restart, served by the
generation runtime, continued, deleted), stop keeps a usable checkpoint, one training at a time, bad uploads, and the
tied-embedding identity P(w | context) = softmax(<vec(w), h>). Tiny models and tens of steps: seconds each."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import BusyError, Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, Settings
from engine.tasks.common import read_text_file
from engine.training import data as data_module
from engine.training.data import CORPORA, TokenData, check_corpus, corpus_text, encode, make_tokenizer, preview
from engine.training.gpt import PretrainOptions, get_lr, make_options
from engine.training.pretrain import STATE_FILE, runs

TEXT = "To be, or not to be, that is the question. " * 40  # as ../shared/tools/smoke.py sends it
TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, eval_iters=2, sample_tokens=20,
            warmup_iters=0, learning_rate=1e-2, min_lr=1e-3)


@pytest.fixture
def engine(tmp_path):
    e = Engine(Settings(cache_dir=tmp_path, offline=True, device="cpu", dtype="float32"))
    yield e
    e.close()


def train(engine: Engine, **options) -> list:
    return list(engine.pretrain(**{"text": TEXT, "name": "tiny-gpt", **TINY, **options}))


# --- options: refused before any compute ----------------------------------------------------------------------------
@pytest.mark.parametrize("options, words", [
    (dict(n_embd=30, n_head=4), ["n_embd (30)", "divisible by n_head (4)", "28 or 32"]),
    (dict(optimizer="lion"), ["optimizer", "adamw, adam, sgd"]),
    (dict(tokenizer="words"), ["tokenizer", "char, bpe"]),
    (dict(n_layer=0), ["n_layer", "between 1 and 48"]),
    (dict(dropout=1.0), ["dropout", "below 1"]),
    (dict(learning_rate=0), ["learning_rate", "above 0"]),
    (dict(min_lr=1.0), ["min_lr", "learning_rate"]),
    (dict(beta2=1.0), ["beta2", "below 1"]),
    (dict(max_iters=2.5), ["max_iters", "whole number"]),
    (dict(vocab_size=100, tokenizer="bpe"), ["vocab_size", "between 260"]),
    (dict(bogus=1), ["Unknown pretraining option", "bogus", "n_embd"]),
])
def test_bad_options_are_refused_before_any_compute(engine, options, words):
    with pytest.raises(InvalidOptionsError) as error:
        engine.pretrain(TEXT, name="x", **options)
    for word in words:
        assert word in str(error.value)
    trained = engine.settings.cache_dir / "trained"
    assert engine.training.running is None and not (trained.is_dir() and any(trained.iterdir()))


def test_block_size_and_text_length_are_checked_against_the_text(engine):
    with pytest.raises(InvalidOptionsError, match=r"block_size \(512\) is too large.*at most 171"):
        engine.pretrain(TEXT, name="x", block_size=512)
    with pytest.raises(InvalidInputError, match="at least 500 are needed"):
        engine.pretrain("Too short a text. " * 10, name="x")
    with pytest.raises(InvalidInputError, match="binary data"):
        engine.pretrain("abc\x00" * 400, name="x")
    with pytest.raises(InvalidOptionsError, match="name must be"):
        engine.pretrain(TEXT, name="no spaces allowed")
    with pytest.raises(InvalidOptionsError, match="built-in model"):
        engine.pretrain(TEXT, name=engine.registry.default("text-generation").name)
    assert not list((engine.settings.cache_dir / "trained").glob(".staging-*"))  # nothing left behind


def test_bad_uploads_get_messages(tmp_path):
    empty, binary, huge = tmp_path / "empty.txt", tmp_path / "image.txt", tmp_path / "huge.txt"
    empty.write_text("")
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 100)
    with open(huge, "wb") as f:  # 200 MB, sparse: refused by its size before it is read
        f.truncate(200 * 2**20)
    with pytest.raises(InvalidInputError, match="at least 500"):
        check_corpus(read_text_file(empty, 100 * 2**20))
    with pytest.raises(InvalidInputError, match="binary"):
        check_corpus(read_text_file(binary, 100 * 2**20))
    with pytest.raises(InputTooLargeError, match="upload limit"):
        read_text_file(huge, 100 * 2**20)


def test_get_lr_warms_up_decays_on_a_cosine_and_floors_at_min_lr():
    o = PretrainOptions()  # nanoGPT's CPU recipe: 1e-3, 100 warm-up steps, decay to 1e-4 at 2000
    assert get_lr(0, o) == pytest.approx(1e-3 / 101)
    assert get_lr(99, o) == pytest.approx(1e-3 * 100 / 101)
    assert get_lr(100, o) == pytest.approx(1e-3)
    assert get_lr(1050, o) == pytest.approx(1e-4 + 0.5 * 0.9e-3)  # half way: the cosine at pi/2
    assert get_lr(2000, o) == pytest.approx(1e-4) and get_lr(5000, o) == 1e-4
    lrs = [get_lr(s, o) for s in range(100, 2001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # never rises after the warm-up
    assert make_options(lr_decay_iters=500).decay_iters == 500


# --- data ---------------------------------------------------------------------------------------------------------
def test_bundled_corpora_are_there_in_their_sizes():
    for name, corpus in CORPORA.items():
        size = corpus.path.stat().st_size
        assert 0.5e6 <= size <= 5e6, (name, size)
    assert "HAMLET" in corpus_text("shakespeare")[:200]
    assert "楊虞卿" in corpus_text("tang-poems")[:100]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizers_round_trip_and_load_with_autotokenizer(tmp_path, kind):
    from transformers import AutoTokenizer

    text = corpus_text("tang-poems")[:20_000] + TEXT
    tokenizer = make_tokenizer(text, kind, vocab_size=400)
    ids = encode(tokenizer, text)
    assert tokenizer.decode(ids.tolist()) == text
    if kind == "char":
        assert len(tokenizer) == len(set(text)) and len(ids) == len(text)
    else:
        assert len(tokenizer) == 400 and len(ids) < len(text.encode())  # fewer tokens than bytes
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.encode(text[:300]) == ids[:len(loaded.encode(text[:300]))].tolist()
    shown = preview(text, kind, vocab_size=400, chars=50)
    assert tokenizer.decode(list(shown.ids)) == text[:50] and len(shown.ids) == shown.tokens
    if kind == "char":
        assert "".join(shown.pieces) == text[:50]
    else:  # pieces of characters show as their bytes
        assert any(p.startswith("<") and p.endswith(">") for p in shown.pieces)


def test_token_array_splits_90_10_and_batches_are_shifted_windows(tmp_path):
    ids = np.arange(1000) % 50
    data = TokenData.write(tmp_path / "t.bin", ids, 50)
    assert data.split_at == 900 and len(data.split("val")) == 100
    x, y = data.get_batch("val", 6, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 8) and x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal((x[:, 1:] - x[:, :-1]) % 50, torch.ones(6, 7, dtype=torch.long))  # contiguous windows
    assert set(x[:, 0].tolist()) <= set(range(50)) and int(x.min()) >= 0
    with pytest.raises(InvalidOptionsError, match="at most 99"):
        data.check_block_size(100)


# --- training, saving, serving --------------------------------------------------------------------------------------
def test_a_tiny_gpt_learns_a_repeated_text_then_round_trips_through_the_registry(engine):
    events = train(engine, max_iters=150, eval_interval=50)
    evals = [e for e in events if e.val_loss is not None and not e.done]  # the last event repeats the final losses
    assert [e.step for e in evals] == [0, 50, 100, 150]
    assert evals[0].val_loss > 2.5  # about ln(16 characters) = 2.77: no idea yet
    assert evals[-1].val_loss < 1.0  # the sentence repeats: it has learnt most of it
    assert all(e.sample is not None for e in evals) and all(e.sample is None for e in events if e.val_loss is None)
    steps = [e for e in events if e.val_loss is None and not e.done]
    assert [e.step for e in steps] == list(range(1, 151))
    assert all(e.tokens_per_second > 0 and e.elapsed_s > 0 and e.eta_s is not None for e in steps)
    last = events[-1]
    assert last.done and last.model == "tiny-gpt" and not last.stopped

    folder = engine.trained.folder("tiny-gpt")
    for file in ("model.safetensors", "config.json", "tokenizer.json", "card.json", STATE_FILE, "tokens.bin"):
        assert (folder / file).is_file(), file
    card = engine.trained.card("tiny-gpt")
    assert card.kind == "pretrained from scratch" and card.family == "causal-lm"
    assert card.metrics["val_loss"] == pytest.approx(evals[-1].val_loss) and len(card.metrics["curve"]) == 4
    assert card.settings["n_embd"] == 32 and card.data["characters"] == len(TEXT) and len(card.data["sha256"]) == 64
    assert [c.name for c in runs(engine)] == ["tiny-gpt"]

    greedy = engine.generate("To be, or not to", model="tiny-gpt", max_new_tokens=12, temperature=0)
    assert greedy.text.startswith(" be")  # it has learnt the line
    assert "tiny-gpt" in [s.name for s in engine.registry.for_task("text-generation")]

    restarted = Engine(Settings(cache_dir=engine.settings.cache_dir, offline=True, device="cpu", dtype="float32"))
    try:
        assert restarted.generate("To be, or not to", model="tiny-gpt", max_new_tokens=12,
                                  temperature=0).text == greedy.text
        continued = list(restarted.pretrain(name="tiny-gpt", resume=True, max_iters=170, eval_interval=50))
        assert continued[0].step == 150 and continued[0].val_loss is not None  # it starts where it stopped
        assert continued[-1].done and continued[-1].step == 170
        assert restarted.trained.card("tiny-gpt").metrics["step"] == 170
        assert [p[0] for p in restarted.trained.card("tiny-gpt").metrics["curve"]] == [0, 50, 100, 150, 170]
        with pytest.raises(InvalidOptionsError, match="cannot change"):
            restarted.pretrain(name="tiny-gpt", resume=True, max_iters=200, n_embd=64)
        with pytest.raises(InvalidOptionsError, match="already trained 170 steps"):
            restarted.pretrain(name="tiny-gpt", resume=True, max_iters=100)
        restarted.delete_model("tiny-gpt")
        assert not folder.exists() and "tiny-gpt" not in restarted.registry.names()
    finally:
        restarted.close()


def test_stop_mid_run_keeps_a_usable_checkpoint_and_a_second_run_is_refused(engine):
    run = engine.pretrain(TEXT, name="stopped-gpt", **{**TINY, "max_iters": 100_000, "eval_interval": 1000})
    for event in run:
        if event.step >= 5:
            break
    with pytest.raises(BusyError, match="pretraining 'stopped-gpt'"):
        engine.pretrain(TEXT, name="other", **TINY)
    run.stop()
    rest = list(run)
    last = rest[-1]
    assert last.done and last.stopped and last.model == "stopped-gpt" and 5 <= last.step < 100_000
    assert "Stopped at step" in last.message
    card = engine.trained.card("stopped-gpt")
    assert card.metrics["stopped"] and card.metrics["step"] == last.step and card.metrics["val_loss"] is not None
    assert engine.generate("To be", model="stopped-gpt", max_new_tokens=5, seed=1).finish_reason == "length"
    assert engine.training.running is None
    assert list(engine.pretrain(TEXT, name="after", **{**TINY, "max_iters": 2}))[-1].done  # the slot is free


def test_closing_the_run_stops_it_and_saves(engine):
    run = engine.pretrain(TEXT, name="closed-gpt", **{**TINY, "max_iters": 100_000, "eval_interval": 1000})
    next(run)
    run.close()
    deadline = time.monotonic() + 60
    while engine.training.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.training.running is None
    assert engine.trained.card("closed-gpt").metrics["stopped"]


def test_bpe_run_and_estimate(engine):
    estimate = engine.estimate_pretraining(TEXT, n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4,
                                           max_iters=100, steps=2)
    assert estimate.vocab_size == len(set(TEXT)) and estimate.parameters > 32 * 16
    assert 0 < estimate.seconds_per_step < 10 and estimate.seconds_total > 100 * estimate.seconds_per_step
    events = train(engine, tokenizer="bpe", vocab_size=300, max_iters=10, eval_interval=10, name="bpe-gpt")
    assert events[-1].model == "bpe-gpt"
    assert engine.trained.card("bpe-gpt").data["vocab_size"] <= 300


def test_optimizers_all_train(engine):
    for optimizer, lr in (("adam", 1e-2), ("sgd", 0.5)):
        events = train(engine, optimizer=optimizer, learning_rate=lr, max_iters=30, eval_interval=30,
                       name=f"{optimizer}-gpt")
        evals = [e.val_loss for e in events if e.val_loss is not None]
        assert evals[-1] < evals[0] - 0.3, optimizer


# --- the article's formula --------------------------------------------------------------------------------------------
def test_tied_embeddings_softmax_of_inner_products_is_the_models_distribution(engine):
    train(engine, max_iters=20, eval_interval=20, name="lens-gpt")
    from transformers import AutoModelForCausalLM

    folder = engine.trained.folder("lens-gpt")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]]) % model.config.vocab_size
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        h = out.hidden_states[-1][0, -1]  # the context vector, after the final layer norm
        inner = model.get_input_embeddings().weight @ h  # <vec(w), h> for every w
    p_inner, p_model = torch.softmax(inner, 0), torch.softmax(out.logits[0, -1], 0)
    assert float((p_inner - p_model).abs().max()) < 1e-12  # float64: identical up to rounding

    lens = engine.logits_as_inner_products("To be, or not", model="lens-gpt", k=5)  # the engine's own, float32
    assert lens.agrees and lens.max_abs_difference < 1e-5
    assert [c.prob_from_inner_products for c in lens.candidates] == pytest.approx(
        [c.model_prob for c in lens.candidates], abs=1e-5)


# --- the tab's endpoint and its plain functions ----------------------------------------------------------------------
def test_pretrain_endpoint_streams_and_refuses_bad_input_with_a_message(engine):
    import apps.pretrain
    from app_process import serving
    from gradio_client.exceptions import AppError

    with serving(apps.pretrain.build(engine)) as client:
        job = client.submit(text=TEXT, n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4, max_iters=20,
                            eval_interval=10, eval_iters=2, name="smoke-gpt", api_name="/pretrain")
        final = job.result(timeout=300)
        outputs = job.outputs()
        assert final["done"] and final["model"] == "smoke-gpt" and final["step"] == 20
        assert [o["step"] for o in outputs if o["val_loss"] is not None and not o["done"]] == [0, 10, 20]
        assert engine.generate("To be", model="smoke-gpt", max_new_tokens=4, seed=0).text is not None
        with pytest.raises(AppError, match="divisible by n_head"):
            client.predict(text=TEXT, n_embd=30, n_head=4, name="bad", api_name="/pretrain")
        with pytest.raises(AppError, match="at least 500"):
            client.predict(text="short", name="bad", api_name="/pretrain")
        assert client.predict(text=TEXT, n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4, max_iters=3,
                              eval_interval=10, eval_iters=1, name="still-up", api_name="/pretrain")["done"]


def test_page_helpers():
    import apps.pretrain as page

    options = page.options_from({**{f: getattr(PretrainOptions(), f) for f in page.FIELDS}, "lr_decay_iters": 0,
                                 "max_iters": 300.0})
    assert options["lr_decay_iters"] is None and options["max_iters"] == 300 and isinstance(options["max_iters"], int)
    frame = page.lr_frame(options, step=100)
    assert frame["learning rate"].max() == pytest.approx(1e-3) and set(frame["series"]) == {"schedule", "done"}
    assert frame[frame.series == "done"]["step"].max() <= 100
    losses = page.loss_frame([(i, 4.0 - i / 1000) for i in range(1, 2001)], [(0, 4.2, 4.2), (250, 2.5, 2.6)])
    assert len(losses[losses.series == "train (batch)"]) <= 401 and set(losses.series) == {
        "train (batch)", "train (evaluation)", "validation"}
    for preset in page.PRESETS.values():  # every preset is a valid set of options
        make_options(**{k: v or None if k == "lr_decay_iters" else v for k, v in preset.items()})
