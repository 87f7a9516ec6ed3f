"""The Fine-tune tab: adapt a pretrained model to a task, measure it against baselines, and use it in the other tabs.

Classifier: a table of labelled texts (uploaded, or the bundled reviews), its label counts and problems before any
compute, a base model, what to adjust (a linear probe, the top layers, the whole model, LoRA adapters; several side
by side on the same split), the live training loss and per-epoch held-out scores, then the confusion matrix,
per-label precision and recall, the misclassified examples and the two baselines. Language model: LoRA on a text,
perplexity and a sample before and after. Question answering: an extractive reader (a span head on an encoder)
trained on question/context/answer rows (uploaded, or the bundled questions), exact match and F1 on held-out questions
before and after each epoch, and the reader's answers to them.

Public endpoints: ``/finetune_classifier``, ``/finetune_lm`` and ``/finetune_qa`` (streaming one dict per event; the
last has the metrics and the saved model's name).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import pandas as pd

from engine import Engine, InvalidInputError
from engine.training import tables
from engine.training import bundled_qa
from engine.training.finetune import DEFAULT_BASE, DEFAULT_LEARNING_RATE, LLM, METHODS, base_choices, inspect_data
from engine.training.finetune_qa import ENCODER_FAMILIES, load_examples, normalize_answer, split

from .common import model_work, user_errors
from .i18n import t

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_TRAIN = ROOT / "assets" / "datasets" / "reviews-train.csv"
BUNDLED_TEST = ROOT / "assets" / "datasets" / "reviews-test.csv"
BUNDLED, UPLOAD = "Bundled example: reviews", "Upload a table"
BUNDLED_QA = "Bundled example: questions"
QA_EXAMPLES = 20  # held-out questions shown with the reader's answers
METHOD_CHOICES = [("Linear probe (base frozen, new head)", "probe"), ("Top N layers", "top_layers"),
                  ("Whole model", "full"), ("LoRA adapters", "lora")]
UPDATE_EVERY_S = 0.5  # at most two page updates a second while training
LM_EXAMPLE = ("The sea was calm that morning, and the fishing boats went out before dawn. The old captain watched "
              "the sky and said the wind would turn by noon. ") * 12
BUNDLED_NOTE = """The bundled example was written for this project: 600 short reviews of films, restaurants,
products, hotels and books **generated from templates** (negative, neutral, positive), tested on 75 reviews
**written by hand** with other wording (`assets/datasets/`, see `assets/README.md`). Template data is easy to fit;
the hand-written test set shows how much of that carries over to new wording."""
BUNDLED_QA_NOTE = """The bundled example was written for this project: 800 questions about invented people, towns,
ships, bridges, companies, festivals, zoo animals and recipes, **generated from templates** (so the answer must be
read from the context, never remembered), tested on 40 questions **written by hand** about other things, in other
words (`assets/datasets/qa-*.csv`, see `assets/README.md`). Four epochs take about two minutes on 2 CPU cores."""


def _method_name(method: str) -> str:
    return dict((v, k) for k, v in METHOD_CHOICES)[method]


def report_markdown(report: tables.DataReport) -> str:
    """The label counts and what is wrong with the data, as shown before training."""
    lines = ["| label | training | test |", "| --- | --- | --- |"]
    for label in sorted(set(report.train_counts) | set(report.test_counts)):
        lines.append(f"| {label} | {report.train_counts.get(label, 0)} | {report.test_counts.get(label, 0)} |")
    test = "held out from the training table (stratified)" if report.held_out else "the separate test table"
    out = [f"**Label counts** — test: {test}", "", *lines]
    out += [f"- ⚠️ **{p}**" for p in report.problems] + [f"- {n}" for n in report.notes]
    if not report.problems:
        out.append(f"- Ready: {sum(report.train_counts.values())} examples, {len(report.train_counts)} labels")
    return "\n".join(out)


def confusion_frame(metrics) -> pd.DataFrame:
    rows = [[label, *row] for label, row in zip(metrics.labels, metrics.confusion)]
    return pd.DataFrame(rows, columns=["true \\ predicted", *metrics.labels])


def per_label_frame(metrics) -> pd.DataFrame:
    return pd.DataFrame([[label, round(s.precision, 3), round(s.recall, 3), round(s.f1, 3), s.support]
                         for label, s in metrics.per_label.items()],
                        columns=["label", "precision", "recall", "F1", "held-out examples"])


def mistakes_frame(metrics) -> pd.DataFrame:
    return pd.DataFrame([[m.text, m.label, m.predicted, round(m.p_label, 3)] for m in metrics.misclassified],
                        columns=["text", "true label", "predicted", "p(true label)"])


def event_dict(event: Any) -> dict:
    """An event as plain JSON for the HTTP API: the metrics and baselines in full on the last one."""
    out = {k: v for k, v in event.to_dict().items() if k not in ("metrics", "baselines")}
    if getattr(event, "metrics", None) is not None:
        out["metrics"] = event.metrics.to_dict()
    if getattr(event, "baselines", ()):
        out["baselines"] = {b.name: {"accuracy": b.metrics.accuracy, "macro_f1": b.metrics.macro_f1,
                                     "description": b.description} for b in event.baselines}
    return out


def _file_path(value: Any) -> Path | None:
    """An uploaded file's path (gradio keeps uploads in its own folder); other paths are refused."""
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    if not path:
        return None
    from gradio.utils import get_upload_folder, is_in_or_equal

    if not is_in_or_equal(path, get_upload_folder()):
        raise InvalidInputError("A file must be uploaded with the request (gradio_client.handle_file), not named by "
                                "its path on the server.")
    return Path(path)


def http_table(value: Any) -> tables.Source | None:
    """What arrives over HTTP: CSV text (never taken for a path on the server) or an uploaded file."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return tables.CsvText(value)
    path = _file_path(value)
    if path is None:
        raise InvalidInputError("Give the table as CSV text (header row first) or as an uploaded file.")
    return path


def build(engine: Engine) -> gr.Blocks:
    running: dict[str, Any] = {}  # session -> the run in progress, for Stop

    def sources(source: str, upload: str | None, test_upload: str | None):
        if source == BUNDLED:
            return BUNDLED_TRAIN, BUNDLED_TEST
        if not upload:
            raise InvalidInputError("Upload a training table first (CSV or TSV, a text and a label column), or "
                                    "choose the bundled example.")
        return Path(upload), (Path(test_upload) if test_upload else None)

    @user_errors
    def on_upload(source: str, upload: str | None):
        if source == BUNDLED or not upload:
            return gr.Dropdown(choices=["text"], value="text"), gr.Dropdown(choices=["label"], value="label")
        names = tables.columns(tables.read_text(Path(upload), engine.settings.max_upload_bytes))
        lower = [n.lower() for n in names]
        text = next((names[lower.index(n)] for n in tables.TEXT_NAMES if n in lower), names[0])
        label = next((names[lower.index(n)] for n in tables.LABEL_NAMES if n in lower), names[-1])
        return gr.Dropdown(choices=names, value=text), gr.Dropdown(choices=names, value=label)

    @user_errors
    def check_data(source, upload, test_upload, text_column, label_column, test_fraction):
        if source == UPLOAD and not upload:
            return "Upload a training table (CSV or TSV with a header row), or choose the bundled example."
        train, test = sources(source, upload, test_upload)
        report = inspect_data(engine, train, test, text_column=text_column or None,
                              label_column=label_column or None, test_fraction=test_fraction)
        return (BUNDLED_NOTE + "\n\n" if source == BUNDLED else "") + report_markdown(report)

    @user_errors
    def train_ui(source, upload, test_upload, text_column, label_column, test_fraction, base, methods, top_layers,
                 optimizer, learning_rate, epochs, batch_size, max_length, class_weights, seed, name,
                 request: gr.Request):
        if not methods:
            raise InvalidInputError("Choose at least one way to fine-tune (a method).")
        train, test = sources(source, upload, test_upload)
        session = request.session_hash if request else "-"
        running[session] = {"stop": False, "run": None}
        losses, epochs_rows, results = [], [], []
        metrics = None
        status = ""
        last_push = 0.0

        def frames():
            loss_df = pd.DataFrame(losses, columns=["step", "loss", "method"])
            epoch_df = pd.DataFrame(epochs_rows, columns=["method", "epoch", "held-out accuracy", "macro-F1",
                                                          "seconds", "sentences/s"])
            result_df = pd.DataFrame(results, columns=["model", "accuracy", "macro-F1", "seconds", "saved as"])
            extra = (confusion_frame(metrics), per_label_frame(metrics), mistakes_frame(metrics)) if metrics \
                else (None, None, None)
            return (status, loss_df, epoch_df, result_df, *extra)

        for i, method in enumerate(methods):
            if running[session]["stop"]:
                break
            label = _method_name(method)
            model_name = name if len(methods) == 1 else f"{name}-{method.replace('_', '-')}"
            run = engine.finetune_classifier(
                train, test=test, base=base, method=method, top_layers=int(top_layers), epochs=int(epochs),
                batch_size=int(batch_size), learning_rate=float(learning_rate) or None, max_length=int(max_length),
                seed=int(seed), name=model_name, optimizer=optimizer, class_weights=bool(class_weights),
                text_column=text_column or None, label_column=label_column or None, test_fraction=test_fraction)
            running[session]["run"] = run
            t0 = time.perf_counter()
            for event in run:
                if event.kind == "start" and i == 0:
                    results.extend([[f"baseline: {b.name} ({b.description})", round(b.metrics.accuracy, 3),
                                     round(b.metrics.macro_f1, 3), round(b.seconds, 2), ""] for b in event.baselines])
                if event.kind == "step":
                    losses.append([event.step, event.loss, label])
                if event.kind == "epoch":
                    epochs_rows.append([label, event.epoch, round(event.val_accuracy, 3),
                                        round(event.val_macro_f1, 3), round(event.epoch_seconds, 1),
                                        round(event.train_sentences_per_s or 0, 1)])
                if event.done:
                    if event.metrics is not None:
                        metrics = event.metrics
                        results.append([f"{label} on {base}", round(metrics.accuracy, 3), round(metrics.macro_f1, 3),
                                        round(time.perf_counter() - t0, 1), event.model or ""])
                status = f"**{label}** ({i + 1} of {len(methods)}): {event.message}"
                if event.done and event.model:
                    status += (f"\n\nSaved as **{event.model}**: pick it in the Sentiment tab's model list, or call "
                               f"`engine.classify(text, model=\"{event.model}\")`.")
                now = time.perf_counter()
                if event.kind != "step" or now - last_push >= UPDATE_EVERY_S:
                    last_push = now
                    yield frames()
        running.pop(session, None)
        yield frames()

    def stop_ui(request: gr.Request):
        current = running.get(request.session_hash if request else "-")
        if current is not None:
            current["stop"] = True
            if current["run"] is not None:
                current["run"].stop()
        return "Stopping after the current step; what was trained so far is saved."

    @user_errors
    def lm_ui(text, upload, base, lora_r, steps, learning_rate, block_size, batch_size, prompt, name):
        if upload:
            text = tables.read_text(Path(upload), engine.settings.max_upload_bytes)
        run = engine.finetune_lm(text or "", base=base or None, lora_r=int(lora_r), steps=int(steps),
                                 learning_rate=float(learning_rate), block_size=int(block_size),
                                 batch_size=int(batch_size), prompt=prompt or None, name=name)
        losses, before, after, last_push = [], "", "", 0.0
        for event in run:
            if event.kind == "step":
                losses.append([event.step, event.loss])
            if event.kind == "start":
                before = event.sample_before
            summary = event.message
            if event.done and event.perplexity_after is not None:
                after = event.sample_after
                summary = (f"Validation perplexity **{event.perplexity_before:.2f} → {event.perplexity_after:.2f}** "
                           f"after {event.step} steps ({event.elapsed:.0f} s, {event.tokens_per_s:.0f} training "
                           f"tokens/s). Saved as **{event.model}**: pick it in the Text generation tab.")
            now = time.perf_counter()
            if event.kind != "step" or now - last_push >= UPDATE_EVERY_S:
                last_push = now
                yield summary, pd.DataFrame(losses, columns=["step", "loss"]), before, after

    def qa_sources(source: str, upload: str | None, test_upload: str | None):
        if source == BUNDLED_QA:
            return bundled_qa.TRAIN, bundled_qa.TEST
        if not upload:
            raise InvalidInputError("Upload a training table first (CSV with the columns question, context, answer), "
                                    "or choose the bundled example.")
        return Path(upload), (Path(test_upload) if test_upload else None)

    @user_errors
    def qa_ui(source, upload, test_upload, base, epochs, learning_rate, batch_size, max_length, name,
              request: gr.Request):
        train, test = qa_sources(source, upload, test_upload)
        limit = engine.settings.max_upload_bytes
        held_out = load_examples(test, "test", limit) if test is not None else \
            split(load_examples(train, "training", limit), 0.2, 0)[1]  # the run's own split (seed 0)
        session = request.session_hash if request else "-"
        run = engine.finetune_qa(train, test=test, base=base or None, epochs=int(epochs),
                                 learning_rate=float(learning_rate), batch_size=int(batch_size),
                                 max_length=int(max_length), name=name or None)
        running[session] = {"stop": False, "run": run}
        losses, rows, examples, last_push = [], [], None, 0.0
        try:
            for event in run:
                if event.kind == "start":
                    rows.append(["before training", round(event.before.exact_match, 3), round(event.before.f1, 3), ""])
                if event.kind == "step":
                    losses.append([event.step, event.loss])
                if event.kind == "epoch":
                    rows.append([event.epoch, round(event.score.exact_match, 3), round(event.score.f1, 3),
                                 round(event.epoch_seconds, 1)])
                status = event.message
                if event.done and event.model:
                    shown = held_out[:QA_EXAMPLES]
                    answers = engine.answer_batch([(e.question, e.context) for e in shown], model=event.model)
                    examples = pd.DataFrame(
                        [["✓" if normalize_answer(a.text) == normalize_answer(e.answer) else "✗", e.question,
                          e.answer, a.text, e.context] for e, a in zip(shown, answers)],
                        columns=["exact match", "question", "expected", "the reader's answer", "context"])
                    status += (f"\n\nSaved as **{event.model}**: pick it in the Question answering tab's model list, "
                               f"or call `engine.answer(question, context, model=\"{event.model}\")`.")
                now = time.perf_counter()
                if event.kind != "step" or now - last_push >= UPDATE_EVERY_S:
                    last_push = now
                    yield (status, pd.DataFrame(losses, columns=["step", "loss"]),
                           pd.DataFrame(rows, columns=["epoch", "exact match", "F1", "seconds"]), examples)
        finally:
            running.pop(session, None)

    # --- the HTTP API (same parameter names as the engine) ---------------------------------------------------
    @user_errors
    def finetune_classifier(train: str | dict, test: str | dict | None = None, base: str = DEFAULT_BASE,
                            method: str = "probe", top_layers: int = 2, epochs: int = 3, batch_size: int = 16,
                            learning_rate: float | None = None, max_length: int = 128, seed: int = 0,
                            name: str | None = None, optimizer: str = "adamw", class_weights: bool = False,
                            text_column: str | None = None, label_column: str | None = None,
                            test_fraction: float = 0.2) -> Iterator[dict]:
        """Fine-tune a classifier on ``train`` (CSV text with a header row, ``text,label`` unless ``text_column``/
        ``label_column`` say otherwise, or an uploaded file); streams one dict per event, the last with
        ``metrics`` (accuracy, macro_f1, per_label, confusion, misclassified), ``baselines`` and ``model``."""
        table = http_table(train)
        if table is None:
            raise InvalidInputError("train is empty: give CSV text with a header row (text,label) or a file.")
        run = engine.finetune_classifier(
            table, test=http_table(test), base=base or None, method=method, top_layers=top_layers, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate or None, max_length=max_length, seed=seed,
            name=name or None, optimizer=optimizer, class_weights=class_weights, text_column=text_column or None,
            label_column=label_column or None, test_fraction=test_fraction)
        for event in run:
            yield event_dict(event)

    @user_errors
    def finetune_lm(text: str, base: str | None = None, lora_r: int = 8, steps: int = 100,
                    learning_rate: float = 1e-3, block_size: int = 64, name: str | None = None,
                    batch_size: int = 2, prompt: str | None = None) -> Iterator[dict]:
        """LoRA-fine-tune a language model on ``text``; streams one dict per event, the last with the validation
        perplexity and a sample before and after, and the saved model's name."""
        run = engine.finetune_lm(text, base=base or None, lora_r=lora_r, steps=steps, learning_rate=learning_rate,
                                 block_size=block_size, name=name or None, batch_size=batch_size,
                                 prompt=prompt or None)
        for event in run:
            yield event_dict(event)

    @user_errors
    def finetune_qa(train: str | dict, test: str | dict | None = None, base: str = DEFAULT_BASE, epochs: int = 4,
                    batch_size: int = 16, learning_rate: float = 3e-4, max_length: int = 256, seed: int = 0,
                    name: str | None = None, test_fraction: float = 0.2) -> Iterator[dict]:
        """Fine-tune an extractive QA reader on ``train`` (CSV text with a header row question,context,answer and
        optionally answer_start, or an uploaded file); streams one dict per event, the first with ``before`` (the
        untrained head's exact match and F1), the last with ``score`` and ``model``."""
        table = http_table(train)
        if table is None:
            raise InvalidInputError("train is empty: give CSV text with a header row (question,context,answer) or a "
                                    "file.")
        run = engine.finetune_qa(table, test=http_table(test), base=base or None, epochs=epochs,
                                 batch_size=batch_size, learning_rate=learning_rate, max_length=max_length, seed=seed,
                                 name=name or None, test_fraction=test_fraction)
        for event in run:
            yield event_dict(event)

    bases = [(n, n) for n in base_choices(engine)] + [("Instruct LLM (last hidden state)", LLM)]
    lm_bases = [s.name for s in engine.registry.for_task("text-generation") if s.family == "causal-lm"]
    qa_bases = [n for n in base_choices(engine) if engine.registry.get(n).family in ENCODER_FAMILIES]
    with gr.Blocks() as tab:
        gr.Markdown(t("finetune.intro"))
        with gr.Tab(t("finetune.tab_classifier")):
            with gr.Row():
                with gr.Column():
                    source = gr.Radio([BUNDLED, UPLOAD], value=BUNDLED, label=t("finetune.data"))
                    upload = gr.File(label=t("finetune.train_table"), file_types=[".csv", ".tsv", ".txt"],
                                     type="filepath", height=110)
                    test_upload = gr.File(label=t("finetune.test_table"),
                                          file_types=[".csv", ".tsv", ".txt"], type="filepath", height=110)
                    with gr.Row():
                        text_column = gr.Dropdown(["text"], value="text", label=t("finetune.text_column"))
                        label_column = gr.Dropdown(["label"], value="label", label=t("finetune.label_column"))
                    test_fraction = gr.Slider(0.1, 0.5, value=0.2, step=0.05, label=t("finetune.held_out_share"))
                    data_report = gr.Markdown(check_data(BUNDLED, None, None, "text", "label", 0.2))
                with gr.Column():
                    base = gr.Dropdown(bases, value=DEFAULT_BASE, label=t("lab.base_model"))
                    methods = gr.CheckboxGroup(METHOD_CHOICES, value=["full"],
                                               label=t("finetune.methods"))
                    top_layers = gr.Slider(1, 12, value=2, step=1, label=t("finetune.top_layers"))
                    with gr.Row():
                        optimizer = gr.Radio(["adamw", "sgd"], value="adamw", label=t("finetune.optimizer"))
                        learning_rate = gr.Number(0, label=t("finetune.learning_rate"),
                                                  info=", ".join(f"{m} {lr:g}"
                                                                 for m, lr in DEFAULT_LEARNING_RATE.items()))
                    with gr.Row():
                        epochs = gr.Slider(1, 10, value=3, step=1, label=t("finetune.epochs"))
                        batch_size = gr.Slider(2, 64, value=16, step=1, label=t("lab.batch_size"))
                        max_length = gr.Slider(16, 512, value=128, step=16, label=t("finetune.max_length"))
                    with gr.Row():
                        class_weights = gr.Checkbox(False, label=t("finetune.class_weights"))
                        seed = gr.Number(0, precision=0, label=t("finetune.seed"))
                    name = gr.Textbox("my-sentiment", label=t("lab.model_name"))
                    with gr.Row():
                        train_button = gr.Button(t("finetune.train"), variant="primary")
                        stop_button = gr.Button(t("lab.stop"))
            status = gr.Markdown()
            with gr.Row():
                loss_plot = gr.LinePlot(x="step", y="loss", color="method", title="Training loss per step",
                                        label=t("lab.training_loss"))
                epoch_table = gr.Dataframe(label=t("finetune.epoch_table"), interactive=False)
            results = gr.Dataframe(label=t("finetune.results"),
                                   interactive=False, wrap=True)
            with gr.Row():
                confusion = gr.Dataframe(label=t("finetune.confusion"),
                                         interactive=False)
                per_label = gr.Dataframe(label=t("finetune.per_label"), interactive=False)
            mistakes = gr.Dataframe(label=t("finetune.mistakes"), interactive=False,
                                    wrap=True)
        with gr.Tab(t("finetune.tab_lm")):
            gr.Markdown(t("finetune.lm_intro"))
            with gr.Row():
                with gr.Column():
                    lm_text = gr.Textbox(LM_EXAMPLE, lines=8, label=t("finetune.lm_text"),
                                         max_length=engine.settings.max_chars)
                    lm_upload = gr.File(label=t("finetune.lm_upload"), file_types=[".txt", ".md"], type="filepath",
                                        height=90)
                    lm_base = gr.Dropdown(lm_bases, value=engine.registry.default("text-generation").name,
                                          label=t("lab.base_model"))
                    with gr.Row():
                        lm_r = gr.Slider(1, 64, value=8, step=1, label=t("finetune.lora_rank"))
                        lm_steps = gr.Slider(10, 500, value=100, step=10, label=t("finetune.steps"))
                        lm_lr = gr.Number(1e-3, label=t("lab.learning_rate"))
                    with gr.Row():
                        lm_block = gr.Slider(16, 256, value=64, step=16, label=t("finetune.block_size"))
                        lm_batch = gr.Slider(1, 16, value=2, step=1, label=t("lab.batch_size"))
                    lm_prompt = gr.Textbox("The old captain", label=t("finetune.lm_prompt"))
                    lm_name = gr.Textbox("my-lora-lm", label=t("lab.model_name"))
                    lm_button = gr.Button(t("finetune.lm_train"), variant="primary")
                with gr.Column():
                    lm_status = gr.Markdown()
                    lm_loss = gr.LinePlot(x="step", y="loss", title="Training loss", label=t("lab.training_loss"))
                    lm_before = gr.Textbox(label=t("finetune.sample_before"), lines=4, interactive=False)
                    lm_after = gr.Textbox(label=t("finetune.sample_after"), lines=4, interactive=False)

        with gr.Tab(t("finetune.tab_qa")):
            gr.Markdown(t("finetune.qa_intro"))
            with gr.Row():
                with gr.Column():
                    qa_source = gr.Radio([BUNDLED_QA, UPLOAD], value=BUNDLED_QA, label=t("finetune.data"))
                    gr.Markdown(BUNDLED_QA_NOTE)
                    qa_upload = gr.File(label=t("finetune.qa_table"), file_types=[".csv", ".tsv", ".txt"],
                                        type="filepath", height=110)
                    qa_test_upload = gr.File(label=t("finetune.test_table"), file_types=[".csv", ".tsv", ".txt"],
                                             type="filepath", height=110)
                with gr.Column():
                    qa_base = gr.Dropdown(qa_bases, value=DEFAULT_BASE if DEFAULT_BASE in qa_bases else None,
                                          label=t("lab.base_model"))
                    with gr.Row():
                        qa_epochs = gr.Slider(1, 10, value=4, step=1, label=t("finetune.epochs"))
                        qa_lr = gr.Number(3e-4, label=t("lab.learning_rate"))
                    with gr.Row():
                        qa_batch = gr.Slider(2, 64, value=16, step=1, label=t("lab.batch_size"))
                        qa_length = gr.Slider(64, 512, value=256, step=32, label=t("finetune.max_length"))
                    qa_name = gr.Textbox("my-qa", label=t("lab.model_name"))
                    with gr.Row():
                        qa_button = gr.Button(t("finetune.qa_train"), variant="primary")
                        qa_stop = gr.Button(t("lab.stop"))
            qa_status = gr.Markdown()
            with gr.Row():
                qa_loss = gr.LinePlot(x="step", y="loss", title="Training loss per step", label=t("lab.training_loss"))
                qa_epochs_table = gr.Dataframe(label=t("finetune.epoch_table"), interactive=False)
            qa_examples = gr.Dataframe(label=t("finetune.qa_examples"), interactive=False, wrap=True,
                                       column_widths=["9%", "27%", "14%", "22%", "28%"])

        data_inputs = [source, upload, test_upload, text_column, label_column, test_fraction]
        upload.change(on_upload, [source, upload], [text_column, label_column], api_visibility="private",
                      queue=False)
        for trigger in (source.change, upload.change, test_upload.change, text_column.change, label_column.change,
                        test_fraction.release):
            trigger(check_data, data_inputs, data_report, api_visibility="private", queue=False)
        train_inputs = data_inputs + [base, methods, top_layers, optimizer, learning_rate, epochs, batch_size,
                                      max_length, class_weights, seed, name]
        train_button.click(train_ui, train_inputs,
                           [status, loss_plot, epoch_table, results, confusion, per_label, mistakes],
                           api_visibility="private", **model_work(engine))
        stop_button.click(stop_ui, None, status, api_visibility="private", queue=False)
        lm_button.click(lm_ui, [lm_text, lm_upload, lm_base, lm_r, lm_steps, lm_lr, lm_block, lm_batch, lm_prompt,
                                lm_name], [lm_status, lm_loss, lm_before, lm_after], api_visibility="private",
                        **model_work(engine))
        gr.api(finetune_classifier, api_name="finetune_classifier", **model_work(engine))
        qa_button.click(qa_ui, [qa_source, qa_upload, qa_test_upload, qa_base, qa_epochs, qa_lr, qa_batch, qa_length,
                                qa_name], [qa_status, qa_loss, qa_epochs_table, qa_examples],
                        api_visibility="private", **model_work(engine))
        qa_stop.click(stop_ui, None, qa_status, api_visibility="private", queue=False)
        gr.api(finetune_lm, api_name="finetune_lm", **model_work(engine))
        gr.api(finetune_qa, api_name="finetune_qa", **model_work(engine))
    return tab
