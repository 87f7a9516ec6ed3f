"""LLM Lab: assemble the app. Reads the configuration, builds one engine, one tab per task, queues and launches.

    python app.py                 # http://127.0.0.1:7860
    python app.py --help          # every flag; each has an environment variable too (see README)
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

import gradio as gr

import api
from apps import shell
from apps.i18n import t
from apps.loading import PRELOAD_DEFAULT, preload
from engine import Engine, Settings

log = logging.getLogger("llm_lab")

# (tab title, module under apps/): each module has build(engine) -> gr.Blocks
TABS = [
    ("Start here", "apps.start"),
    ("Text generation", "apps.generation"),
    ("Embeddings", "apps.embeddings"),
    ("Pretrain", "apps.pretrain"),
    ("Fine-tune", "apps.finetune"),
    ("Attention", "apps.attention"),
    ("Translation", "apps.translation"),
    ("Question answering", "apps.qa"),
    ("Sentiment", "apps.sentiment"),
    ("Speech to text", "apps.speech"),
    ("Engine", "apps.engine_tab"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="LLM Lab: see how language models work, and make your own: generation, embeddings, "
                                "pretraining, fine-tuning, attention, translation, QA, sentiment and speech.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (GRADIO_SERVER_NAME; default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (GRADIO_SERVER_PORT; default 7860)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (LLM_LAB_DEVICE)")
    p.add_argument("--dtype", help="auto | float32 | bfloat16 | float16 (LLM_LAB_DTYPE)")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="compile Llama-type models' decoding step with torch.compile at load: default, or "
                        "max-autotune (minutes at load; the fastest int8 steps) (LLM_LAB_COMPILE)")
    p.add_argument("--encoder-dtype", help="the sentiment classifiers', sentence encoders' and whisper's audio "
                                           "encoder's dtype: auto | float32 | bfloat16 | float16 (LLM_LAB_ENCODER_DTYPE)")
    p.add_argument("--weights", help="text generation's weights: auto | fp32 | bf16 | int8 | int4 (LLM_LAB_WEIGHTS)")
    p.add_argument("--speech-weights", help="whisper's decoder weights: auto | fp32 | int8 (LLM_LAB_SPEECH_WEIGHTS)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (LLM_LAB_THREADS)")
    p.add_argument("--models", dest="models_file", help="JSON/TOML file adding or overriding models (LLM_LAB_MODELS)")
    p.add_argument("--offline", action="store_true", default=None, help="never contact the hub (HF_HUB_OFFLINE=1)")
    p.add_argument("--memory-budget-gb", type=float, help="memory for loaded models (LLM_LAB_MEMORY_BUDGET_GB)")
    p.add_argument("--concurrency", type=int, help="model events run at once, all tabs (LLM_LAB_CONCURRENCY)")
    p.add_argument("--queue-size", type=int, help="waiting events before 'busy' (LLM_LAB_QUEUE_SIZE)")
    p.add_argument("--api-key", default=os.environ.get("LLM_LAB_API_KEY") or None,
                   help="key the /v1 API requires as 'Authorization: Bearer KEY' (LLM_LAB_API_KEY); without one the "
                        "API answers loopback clients only")
    p.add_argument("--log-level", default=os.environ.get("LLM_LAB_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # also for huggingface_hub and transformers themselves
    budget = int(args.memory_budget_gb * 2**30) if args.memory_budget_gb else None
    return Settings.from_env(device=args.device, dtype=args.dtype, encoder_dtype=args.encoder_dtype,
                             weights=args.weights, speech_weights=args.speech_weights, compile=args.compile,
                             threads=args.threads, models_file=args.models_file, memory_budget_bytes=budget,
                             concurrency=args.concurrency, queue_size=args.queue_size)


def build_app(engine: Engine) -> gr.Blocks:
    """The whole UI: an introduction and one tab per task, each built by its module from the shared engine."""
    with gr.Blocks(title="LLM Lab") as demo:
        gr.Markdown(t("app.intro"))  # the introduction, in the visitor's language (apps/i18n.py)
        built = {}
        with gr.Tabs() as tabs:
            for title, module in TABS:
                with gr.Tab(shell.tab_label(title), id=shell.tab_id(title)):
                    # built in the Tab, it renders there (once)
                    built[shell.tab_id(title)] = importlib.import_module(module).build(engine)
        shell.connect(demo, tabs, built)  # ?tab= links, and Start here's buttons that open and fill other tabs
    demo.queue(default_concurrency_limit=engine.settings.concurrency, max_size=engine.settings.queue_size)
    return shell.launch_with_translations(demo)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine(settings_from(args))
    log.info("device: %s", engine.policy.describe())
    demo = build_app(engine)
    preload(engine, os.environ.get("LLM_LAB_PRELOAD", PRELOAD_DEFAULT))  # first request as fast as the next ones
    # A service manager stops us with SIGTERM: exit normally, so that clean-up (the downloads folder) runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=engine.settings.max_upload_bytes,
                footer_links=["api", "settings"], app_kwargs=api.app_kwargs(engine, args.api_key))  # + /v1


if __name__ == "__main__":
    main()
