"""The Pretrain tab: train a small GPT from scratch on a text, watch it learn, then use it in every tab.

Choose a text (a bundled corpus, an uploaded .txt or a paste) and a tokenizer (see the ids and pieces), a model and a
recipe (nanoGPT's names, three presets), see the parameter count and the measured time per step, then train and watch
the loss curves, the learning-rate schedule, the speed and samples of text at each evaluation. Stop at any time,
continue a stopped run, compare runs, delete them. The model appears in the Text generation tab under its name.

Public API endpoint (``gradio_client``): ``/pretrain`` (``text`` or ``corpus``, ``name`` and the options by their
nanoGPT names) streams progress as dicts; the last one has ``done`` and ``model``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterator

import gradio as gr
import pandas as pd
from gradio.i18n import I18nData

from engine import Engine, InvalidInputError
from engine.tasks.common import read_text_file
from engine.training.data import CORPORA, corpus_text, preview
from engine.training.gpt import PretrainOptions, get_lr
from engine.training.pretrain import PretrainProgress, runs

from .common import user_errors
from .i18n import english, t

log = logging.getLogger(__name__)

DEFAULTS = PretrainOptions()
UPDATE_EVERY_S = 0.5  # the page is updated at most twice a second (evaluations always)
SOURCES = ("Bundled corpus", "Upload a .txt file", "Paste text")
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
RECIPE_FIELDS = ("batch_size", "max_iters", "learning_rate", "min_lr", "warmup_iters", "lr_decay_iters",
                 "weight_decay", "beta1", "beta2", "grad_clip", "eval_interval", "eval_iters", "optimizer", "seed")
FIELDS = MODEL_FIELDS + RECIPE_FIELDS
PRESETS: dict[str, dict[str, Any]] = {
    "tiny (1 min)": dict(n_layer=2, n_head=4, n_embd=128, block_size=64, dropout=0.0, batch_size=12, max_iters=800,
                         learning_rate=2e-3, min_lr=2e-4, warmup_iters=50, lr_decay_iters=0, eval_interval=200,
                         eval_iters=10),
    "nanoGPT CPU recipe (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 steps)": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, batch_size=12, max_iters=2000,
        learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=0, eval_interval=250, eval_iters=20),
    "bigger (GPU)": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, batch_size=64, max_iters=5000,
                         learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=0, eval_interval=250,
                         eval_iters=200),
}
SETTINGS_HEADERS = ["model", "steps", "val loss", "train loss", "optimizer", "learning rate", "layers", "heads",
                    "width", "context", "batch", "tokenizer", "data", "stopped"]


# --- plain functions (tested without a browser) -------------------------------------------------------------------
def _english(label: Any) -> str:
    """A component's label in English (a translated label is a ``gr.I18nData``)."""
    return english(label.key) if isinstance(label, I18nData) else str(label)


def options_from(values: dict[str, Any]) -> dict[str, Any]:
    """The page's values as pretrain() options: whole numbers as ints, lr_decay_iters 0 as "max_iters"."""
    out = {}
    for name in FIELDS:
        value = values[name]
        if isinstance(value, float) and value.is_integer() and isinstance(getattr(DEFAULTS, name), int):
            value = int(value)
        out[name] = value
    out["lr_decay_iters"] = out["lr_decay_iters"] or None
    return out


def source_text(engine: Engine, source: str, corpus: str, upload: str | None, pasted: str) -> tuple[str, str]:
    """(the training text, a description of where it came from)."""
    if source == SOURCES[0]:
        return corpus_text(corpus), f"bundled corpus {corpus!r}"
    if source == SOURCES[1]:
        if not upload:
            raise InvalidInputError("Upload a .txt file first (or pick a bundled corpus).")
        text = read_text_file(upload, engine.settings.max_upload_bytes)
        return text, f"uploaded file {upload.rsplit('/', 1)[-1]!r}"
    return pasted or "", "pasted text"


def event_dict(e: PretrainProgress) -> dict[str, Any]:
    return dataclasses.asdict(e)


def status_markdown(e: PretrainProgress, name: str) -> str:
    if e.done:
        return f"**{e.message}** Final losses: train {e.train_loss:.4f}, validation {e.val_loss:.4f}." \
            if e.val_loss is not None else f"**{e.message}**"
    eta = f"{e.eta_s:,.0f} s" if e.eta_s is not None else "…"
    loss = f"{e.train_loss:.4f}" if e.train_loss is not None else "…"
    return (f"Training **{name}**: step **{e.step:,}** of {e.max_iters:,} · loss {loss} · learning rate "
            f"{e.learning_rate:.2e} · **{e.tokens_per_second:,.0f} tokens/s** · elapsed {e.elapsed_s:,.0f} s · "
            f"ETA {eta}")


def loss_frame(train: list[tuple[int, float]], evals: list[tuple[int, float, float]], most: int = 400) -> pd.DataFrame:
    """Long-form rows for the loss chart: each step's batch loss (thinned to ``most`` points) and the evaluations."""
    every = max(1, len(train) // most)
    rows = [(s, l, "train (batch)") for s, l in train[::every]]
    rows += [(s, t, "train (evaluation)") for s, t, _ in evals] + [(s, v, "validation") for s, _, v in evals]
    return _typed(pd.DataFrame(rows, columns=["step", "loss", "series"]))


def lr_frame(options: dict[str, Any], step: int = 0, points: int = 200) -> pd.DataFrame:
    """The learning-rate schedule over the run, and the part done so far."""
    o = PretrainOptions(**{k: v for k, v in options.items() if k in PretrainOptions.__dataclass_fields__})
    steps = sorted({round(i * o.max_iters / points) for i in range(points + 1)}
                   | ({o.warmup_iters} if o.warmup_iters <= o.max_iters else set()))
    rows = [(s, get_lr(s, o), "schedule") for s in steps] + [(s, get_lr(s, o), "done") for s in steps if s <= step]
    return _typed(pd.DataFrame(rows, columns=["step", "learning rate", "series"]))


def compare_frame(cards: list) -> pd.DataFrame:
    rows = [(p[0], p[2], c.name) for c in cards for p in c.metrics.get("curve", []) if p[2] is not None]
    return _typed(pd.DataFrame(rows, columns=["step", "validation loss", "run"]))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers even when there are no rows (a chart takes an empty text column for categories)."""
    return frame.astype({frame.columns[0]: "int64", frame.columns[1]: "float64", frame.columns[2]: "str"})


def settings_rows(cards: list) -> list[list]:
    rows = []
    for c in cards:
        s, m = c.settings, c.metrics
        rows.append([c.name, m.get("step"), _round(m.get("val_loss")), _round(m.get("train_loss")), s.get("optimizer"),
                     s.get("learning_rate"), s.get("n_layer"), s.get("n_head"), s.get("n_embd"), s.get("block_size"),
                     s.get("batch_size"), s.get("tokenizer"), c.data.get("source", ""),
                     "yes" if m.get("stopped") else ""])
    return rows


def _round(x: float | None) -> float | None:
    return round(x, 4) if isinstance(x, float) else x


def preview_rows(text: str, tokenizer: str, vocab_size: float) -> tuple[str, list[list]]:
    shown = preview(text, tokenizer, int(vocab_size), chars=300)
    pieces = [p.replace("\n", "↵").replace(" ", "␣") for p in shown.pieces]
    per_token = shown.characters / max(1, shown.tokens)
    summary = (f"**{shown.characters} characters → {shown.tokens} tokens** ({per_token:.2f} characters per token); "
               f"vocabulary of this text: **{shown.vocab_size:,}** tokens.")
    return summary, [[i, piece] for i, piece in zip(shown.ids, pieces)]


# --- the tab --------------------------------------------------------------------------------------------------------
def build(engine: Engine) -> gr.Blocks:

    def stream(run, name: str, options: dict[str, Any]) -> Iterator[tuple]:
        """Page updates from a run's events: at most every UPDATE_EVERY_S, and at each evaluation and the end."""
        train, evals, samples = [], [], []
        last_update = 0.0
        for e in run:
            if e.val_loss is not None and not e.done:
                evals.append((e.step, e.train_loss, e.val_loss))
                if not train:  # every series from the first drawing on: the chart keeps its first legend
                    train.append((e.step, e.train_loss))
                samples.append(f"**step {e.step:,}** (validation loss {e.val_loss:.3f})\n\n```\n{e.sample}\n```")
            elif not e.done:
                train.append((e.step, e.train_loss))
            now = time.monotonic()
            if e.done or e.val_loss is not None or now - last_update >= UPDATE_EVERY_S:
                last_update = now
                yield (status_markdown(e, name), loss_frame(train, evals), lr_frame(options, e.step),
                       samples[-1].split("```\n", 1)[1].rstrip("`\n") if samples else "",
                       "\n\n".join(reversed(samples)), run.id)

    @user_errors
    def train_ui(source, corpus, upload, pasted, tokenizer, vocab_size, name, *values):
        options = options_from(dict(zip(FIELDS, values)))
        text, where = source_text(engine, source, corpus, upload, pasted)
        run = engine.pretrain(text, name=name, source=where, tokenizer=tokenizer, vocab_size=int(vocab_size),
                              **options)
        yield from stream(run, name, options)

    @user_errors
    def continue_ui(name, max_iters, eval_interval, eval_iters):
        run = engine.pretrain(name=name, resume=True, max_iters=int(max_iters), eval_interval=int(eval_interval),
                              eval_iters=int(eval_iters))
        card = engine.trained.card(name)
        options = {**card.settings, "max_iters": int(max_iters)}
        yield from stream(run, name, options)

    def stop_ui(run_id):
        if run_id is not None:
            engine.cancel(run_id)
        return "Stopping at the next step; the model learnt so far is being saved…"

    @user_errors
    def estimate_ui(source, corpus, upload, pasted, tokenizer, vocab_size, *values):
        options = options_from(dict(zip(FIELDS, values)))
        text, _ = source_text(engine, source, corpus, upload, pasted)
        e = engine.estimate_pretraining(text, tokenizer=tokenizer, vocab_size=int(vocab_size), **options)
        return (f"**{e.parameters / 1e6:.2f} M parameters** (vocabulary {e.vocab_size:,}) · "
                f"**{e.seconds_per_step * 1000:,.0f} ms per step** measured on {e.device} "
                f"({e.tokens_per_step:,} tokens per step, {e.tokens_per_step / e.seconds_per_step:,.0f} tokens/s) · "
                f"about **{e.seconds_total / 60:,.1f} min** for {options['max_iters']:,} steps with the evaluations.")

    @user_errors
    def preview_ui(source, corpus, upload, pasted, tokenizer, vocab_size):
        text, _ = source_text(engine, source, corpus, upload, pasted)
        return preview_rows(text, tokenizer, vocab_size)

    def runs_ui(selected=None):
        cards = runs(engine)
        names = [c.name for c in cards]
        chosen = [n for n in (selected or names[:4]) if n in names]
        return (gr.CheckboxGroup(choices=names, value=chosen), settings_rows(cards),
                gr.Dropdown(choices=names, value=names[0] if names else None), time.time())

    @user_errors
    def delete_ui(name):
        if not name:
            raise InvalidInputError("Pick a run to delete.")
        engine.delete_model(name)
        return runs_ui()

    def apply_preset(preset):
        values = PRESETS[preset]
        return [gr.update(value=values[f]) if f in values else gr.skip() for f in FIELDS]

    # The public API: a streaming endpoint with the engine's option names.
    @user_errors
    def pretrain_api(text: str = "", name: str = "my-gpt", corpus: str = "", tokenizer: str = DEFAULTS.tokenizer,
                     vocab_size: int = DEFAULTS.vocab_size, n_layer: int = DEFAULTS.n_layer,
                     n_head: int = DEFAULTS.n_head, n_embd: int = DEFAULTS.n_embd,
                     block_size: int = DEFAULTS.block_size, dropout: float = DEFAULTS.dropout,
                     batch_size: int = DEFAULTS.batch_size, max_iters: int = DEFAULTS.max_iters,
                     learning_rate: float = DEFAULTS.learning_rate, min_lr: float = DEFAULTS.min_lr,
                     warmup_iters: int = DEFAULTS.warmup_iters, lr_decay_iters: int = 0,
                     weight_decay: float = DEFAULTS.weight_decay, beta1: float = DEFAULTS.beta1,
                     beta2: float = DEFAULTS.beta2, grad_clip: float = DEFAULTS.grad_clip,
                     eval_interval: int = DEFAULTS.eval_interval, eval_iters: int = DEFAULTS.eval_iters,
                     optimizer: str = DEFAULTS.optimizer, seed: int = DEFAULTS.seed,
                     resume: bool = False) -> Iterator[dict]:
        """Pretrain a GPT on ``text`` (or a bundled ``corpus``: shakespeare, tang-poems) and save it as ``name``;
        streams progress dicts (step, train_loss, val_loss, learning_rate, tokens_per_second, elapsed_s, eta_s,
        sample, done, model). ``resume``: continue the saved run ``name`` up to ``max_iters``."""
        if resume:
            run = engine.pretrain(name=name, resume=True, max_iters=max_iters, eval_interval=eval_interval,
                                  eval_iters=eval_iters)
        else:
            values = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, dropout=dropout,
                          batch_size=batch_size, max_iters=max_iters, learning_rate=learning_rate, min_lr=min_lr,
                          warmup_iters=warmup_iters, lr_decay_iters=lr_decay_iters, weight_decay=weight_decay,
                          beta1=beta1, beta2=beta2, grad_clip=grad_clip, eval_interval=eval_interval,
                          eval_iters=eval_iters, optimizer=optimizer, seed=seed)
            run = engine.pretrain(text or None, name=name, corpus=corpus or None, tokenizer=tokenizer,
                                  vocab_size=vocab_size, source="text sent to the /pretrain endpoint" if text else None,
                                  **options_from(values))
        last = 0.0
        with run:  # a client that goes away stops the run (the model learnt so far is kept)
            for e in run:
                if e.done or e.val_loss is not None or time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    yield event_dict(e)

    with gr.Blocks() as tab:
        gr.Markdown(t("pretrain.intro"))
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown(t("pretrain.step_text"))
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label=t("pretrain.training_text"))
                corpus = gr.Dropdown([(f"{c.name} — {c.description}", c.name) for c in CORPORA.values()],
                                     value="shakespeare", label=t("pretrain.corpus"))
                upload = gr.File(label=t("pretrain.upload"), file_types=[".txt"], type="filepath", visible=False)
                pasted = gr.Textbox(label=t("pretrain.pasted"), lines=6, visible=False)
                with gr.Row():
                    tokenizer = gr.Radio(["char", "bpe"], value="char", label=t("pretrain.tokenizer"))
                    vocab_size = gr.Slider(260, 8192, 1024, step=1, label=t("pretrain.vocab_size"), visible=False)
                preview_button = gr.Button(t("pretrain.preview"))
                preview_info = gr.Markdown()
                preview_table = gr.Dataframe(headers=["id", "piece"], label=t("pretrain.first_tokens"),
                                             interactive=False, max_height=220)
            with gr.Column(scale=1):
                gr.Markdown(t("pretrain.step_model"))
                preset = gr.Dropdown(list(PRESETS), value=list(PRESETS)[1], label=t("pretrain.preset"))
                with gr.Row():
                    n_layer = gr.Number(DEFAULTS.n_layer, label="n_layer", precision=0, minimum=1)
                    n_head = gr.Number(DEFAULTS.n_head, label="n_head", precision=0, minimum=1)
                    n_embd = gr.Number(DEFAULTS.n_embd, label="n_embd", precision=0, minimum=8)
                    block_size = gr.Number(DEFAULTS.block_size, label="block_size", precision=0, minimum=4)
                    dropout = gr.Number(DEFAULTS.dropout, label="dropout", minimum=0, maximum=0.9)
                with gr.Row():
                    batch_size = gr.Number(DEFAULTS.batch_size, label="batch_size", precision=0, minimum=1)
                    max_iters = gr.Number(DEFAULTS.max_iters, label="max_iters", precision=0, minimum=1)
                    optimizer = gr.Dropdown(["adamw", "adam", "sgd"], value="adamw", label="optimizer")
                    learning_rate = gr.Number(DEFAULTS.learning_rate, label="learning_rate")
                with gr.Accordion(t("pretrain.more_recipe"), open=False):
                    with gr.Row():
                        min_lr = gr.Number(DEFAULTS.min_lr, label="min_lr")
                        warmup_iters = gr.Number(DEFAULTS.warmup_iters, label="warmup_iters", precision=0)
                        lr_decay_iters = gr.Number(0, label=t("pretrain.lr_decay_iters"), precision=0)
                        weight_decay = gr.Number(DEFAULTS.weight_decay, label="weight_decay")
                    with gr.Row():
                        beta1 = gr.Number(DEFAULTS.beta1, label=t("pretrain.beta1"))
                        beta2 = gr.Number(DEFAULTS.beta2, label="beta2")
                        grad_clip = gr.Number(DEFAULTS.grad_clip, label=t("pretrain.grad_clip"))
                        seed = gr.Number(DEFAULTS.seed, label="seed", precision=0)
                    with gr.Row():
                        eval_interval = gr.Number(DEFAULTS.eval_interval, label="eval_interval", precision=0)
                        eval_iters = gr.Number(DEFAULTS.eval_iters, label="eval_iters", precision=0)
                name = gr.Textbox("my-gpt", label=t("pretrain.name"), max_lines=1)
                estimate_button = gr.Button(t("pretrain.estimate"))
                estimate_info = gr.Markdown()
                with gr.Row():
                    train_button = gr.Button(t("pretrain.train"), variant="primary")
                    stop_button = gr.Button(t("lab.stop"), variant="stop")
                    continue_button = gr.Button(t("pretrain.continue"))
        gr.Markdown(t("pretrain.step_watch"))
        status = gr.Markdown(t("pretrain.not_training"))
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="loss", color="series", label=t("pretrain.loss_plot"))
            lr_plot = gr.LinePlot(x="step", y="learning rate", color="series", label=t("pretrain.lr_plot"))
        sample_box = gr.Textbox(label=t("pretrain.latest_sample"), lines=6, interactive=False)
        with gr.Accordion(t("pretrain.every_sample"), open=False):
            samples = gr.Markdown()
        run_id = gr.State(None)
        gr.Markdown(t("pretrain.step_compare"))
        with gr.Row():
            compare_runs = gr.CheckboxGroup([], label=t("pretrain.runs_to_overlay"))
            refresh = gr.Button(t("pretrain.refresh_runs"), scale=0)

        # Drawn anew for each choice of runs: a chart keeps the legend of the first data it drew, so a run added
        # later would not show in an updated one.
        runs_changed = gr.State(0.0)  # set when a run ends or is deleted: the curves are drawn again

        @gr.render(inputs=[compare_runs, runs_changed])
        def overlay(selected, _changed):
            cards = [c for c in runs(engine) if c.name in (selected or [])]
            if cards:
                gr.LinePlot(compare_frame(cards), x="step", y="validation loss", color="run",
                            label=t("pretrain.val_loss_plot"))
            else:
                gr.Markdown(t("pretrain.no_runs_ticked"))

        settings_table = gr.Dataframe(headers=SETTINGS_HEADERS, label=t("pretrain.settings_table"), interactive=False)
        with gr.Row():
            to_delete = gr.Dropdown([], label=t("pretrain.run_to_delete"))
            delete_button = gr.Button(t("pretrain.delete"), variant="stop", scale=0)

        # --- events ---------------------------------------------------------------------------------------------
        fields = [n_layer, n_head, n_embd, block_size, dropout, batch_size, max_iters, learning_rate, min_lr,
                  warmup_iters, lr_decay_iters, weight_decay, beta1, beta2, grad_clip, eval_interval, eval_iters,
                  optimizer, seed]
        assert [_english(c.label).split(" ")[0] for c in fields] == list(FIELDS)
        text_inputs = [source, corpus, upload, pasted, tokenizer, vocab_size]
        outputs = [status, loss_plot, lr_plot, sample_box, samples, run_id]
        private = dict(api_visibility="private")
        training = dict(concurrency_id="pretrain", concurrency_limit=4)  # a second run is told the slot is taken

        source.change(lambda s: (gr.update(visible=s == SOURCES[0]), gr.update(visible=s == SOURCES[1]),
                                 gr.update(visible=s == SOURCES[2])), source, [corpus, upload, pasted], queue=False,
                      **private)
        tokenizer.change(lambda k: gr.update(visible=k == "bpe"), tokenizer, vocab_size, queue=False, **private)
        preset.change(apply_preset, preset, fields, queue=False, **private)
        preview_button.click(preview_ui, text_inputs, [preview_info, preview_table], **private)
        estimate_button.click(estimate_ui, text_inputs + fields, estimate_info, **private, **training)
        train_event = train_button.click(train_ui, text_inputs + [name] + fields, outputs, **private, **training)
        continue_event = continue_button.click(continue_ui, [name, max_iters, eval_interval, eval_iters], outputs,
                                               **private, **training)
        stop_button.click(stop_ui, run_id, status, queue=False, **private)
        for event in (train_event, continue_event):
            event.then(runs_ui, compare_runs, [compare_runs, settings_table, to_delete, runs_changed], **private)
        refresh.click(runs_ui, compare_runs, [compare_runs, settings_table, to_delete, runs_changed], queue=False,
                      **private)
        delete_button.click(delete_ui, to_delete, [compare_runs, settings_table, to_delete, runs_changed], **private)
        tab.load(runs_ui, None, [compare_runs, settings_table, to_delete, runs_changed], queue=False, **private)
        tab.load(lambda: lr_frame(dataclasses.asdict(DEFAULTS)), None, lr_plot, queue=False, **private)

        gr.api(pretrain_api, api_name="pretrain", **training)
    return tab
