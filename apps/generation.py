"""The Text generation tab: streaming generation with every decoding control, and the next-token lens that shows
how a language model predicts, P(w | context) = softmax over its vocabulary, one token at a time.

Public API endpoints (``gradio_client``): ``/generate`` (``prompt`` and the controls by name) returns the text;
``/next_token`` (``prompt``, ``top_k``, ``temperature``, ``top_p``, ``model``) returns the distribution as data.
"""
from __future__ import annotations

import html
import logging
import re
import weakref

import gradio as gr
import pandas as pd

from engine import Engine, InvalidOptionsError, codegen
from engine.tasks.generation import (GenerationOptions, GenerationResult, GenerationStream, NextTokenDistribution,
                                     TokenStep)

from .common import model_choices, model_label, model_work, user_errors
from .code_panel import code_panel, code_values
from .i18n import t
from .loading import with_load_notice

log = logging.getLogger(__name__)

TASK = "text-generation"
DEFAULTS = GenerationOptions()
# the intro is in apps/i18n.py ("generation.intro"), in English and Chinese
GENERATE_EXAMPLES = [
    ["Write one sentence about the sea.", True],
    ["Explain what a neural network is, in two sentences.", True],
    ["Give me three tips for learning a new language.", True],
    ["Once upon a time, in a small village by the mountains,", False],
    ["def fibonacci(n):", False],
]
LENS_EXAMPLES = ["The capital of France is", "Once upon a time, there was a", "1, 2, 3, 4,", "The opposite of hot is",
                 "I love you. In French: je t'", "我 吃了一个 饼干", "中国的首都是"]
STEP_HEADERS = ["#", "token", "probability", "entropy (bits)", "the model's top alternatives"]


# --- formatting (plain functions, tested without a browser) -----------------------------------------------------------
def show_token(token: str) -> str:
    """A token as a label: visible spaces and line breaks, never empty."""
    if not token:
        return "∅"
    stripped = token.lstrip(" ")
    return "␣" * (len(token) - len(stripped)) + stripped.replace("\n", "↵").replace("\t", "⇥")


def parse_stop(text: str | None) -> tuple[str, ...]:
    """Stop sequences from a text box: one per line; ``\\n`` and ``\\t`` stand for a line break and a tab."""
    lines = (text or "").split("\n")
    return tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in lines if s.strip() or "\\" in s)


def parse_seed(value: str | float | int | None) -> int | None:
    """The seed from a text box or an API call: empty means a fresh random seed."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    whole = re.fullmatch(r"(-?\d+)(?:\.0*)?", text)  # "42", or "42.0" from a number field
    if whole is None:
        raise InvalidOptionsError(f"The seed must be a whole number (or empty for a random one), got {text!r}.")
    return int(whole.group(1))


def _colour(prob: float) -> str:
    """Red for an unlikely token, through yellow, to green for a likely one (translucent: works on dark themes)."""
    return f"hsla({round(120 * max(0.0, min(1.0, prob)))}, 85%, 45%, 0.35)"


def coloured_html(steps: list[TokenStep] | tuple[TokenStep, ...], prefix: str = "") -> str:
    """The text, each token's piece on a background coloured by the model's probability of it (hover for numbers)."""
    spans = [f'<span style="color:var(--body-text-color-subdued)">{html.escape(prefix)}</span>'] if prefix else []
    for s in steps:
        if s.text:
            title = f"{show_token(s.token)}: p = {s.prob:.3f}, entropy {s.entropy:.2f} bits"
            spans.append(f'<span title="{html.escape(title)}" style="background:{_colour(s.prob)};'
                         f'border-radius:3px">{html.escape(s.text)}</span>')
    legend = ('<div style="font-size:0.85em;margin-top:0.5em">Background: '
              f'<span style="background:{_colour(0.02)}">unlikely</span> → '
              f'<span style="background:{_colour(0.5)}">even odds</span> → '
              f'<span style="background:{_colour(0.98)}">near certain</span> '
              '(the model\'s probability of each token; hover a token for the numbers)</div>')
    return f'<div style="white-space:pre-wrap;line-height:1.7">{"".join(spans)}</div>{legend}'


def step_rows(steps: list[TokenStep] | tuple[TokenStep, ...], start: int = 0) -> list[list]:
    return [[start + i + 1, show_token(s.token), round(s.prob, 4), round(s.entropy, 2),
             " · ".join(f"{show_token(a.token)} {a.prob:.3f}" for a in s.alternatives)] for i, s in enumerate(steps)]


def summary(result: GenerationResult) -> str:
    why = {"length": "reached max new tokens", "stop": "hit a stop sequence", "eos": "the model ended its answer",
           "cancelled": "stopped by you"}[result.finish_reason]
    seed = f" · seed {result.seed} (use it to get this text again)" if result.seed is not None else " · greedy"
    line = (f"**{len(result.tokens)} tokens** in {result.seconds:.1f} s ({result.tokens_per_second:.1f} tokens/s) · "
            f"finished: {why} · prompt {result.prompt_tokens} tokens{' (chat template)' if result.chat else ''}{seed}")
    return "\n\n".join([line, *(f"⚠️ {n}" for n in result.notes)])


def _labels(dist: NextTokenDistribution) -> list[str]:
    """Unique bar labels (two tokens may look alike, e.g. two halves of characters)."""
    labels, seen = [], set()
    for t in dist.top:
        label = show_token(t.token)
        if label in seen:
            label = f"{label} #{t.token_id}"
        seen.add(label)
        labels.append(label)
    return labels


OTHERS = "(all others)"


def lens_frames(dist: NextTokenDistribution) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two bar-chart tables, before and after reshaping: the shown tokens, then the mass of all the other tokens.
    (The charts sort bars by height: reshaping keeps the tokens' order, so both charts list them alike.)"""
    labels = _labels(dist) + [OTHERS]
    before = pd.DataFrame({"token": labels, "probability": [t.prob for t in dist.top] + [dist.other]})
    after = pd.DataFrame({"token": labels, "probability": [t.reshaped for t in dist.top] + [dist.other_reshaped]})
    return before, after


def lens_markdown(dist: NextTokenDistribution) -> str:
    k = f"top-k {dist.top_k}" if dist.top_k else "no top-k"
    p = f"top-p {dist.top_p:g}" if dist.top_p < 1 else "no top-p"
    lines = [f"**Entropy:** {dist.entropy:.2f} bits before, {dist.entropy_reshaped:.2f} bits after "
             f"(temperature {dist.temperature:g}, {k}, {p}). The {len(dist.top)} tokens shown hold "
             f"{1 - dist.other:.1%} of the probability; the other {dist.probs.shape[0] - len(dist.top):,} tokens "
             f"of the vocabulary share {dist.other:.1%}. Prompt: {dist.prompt_tokens} tokens."]
    return "\n\n".join(lines + [f"⚠️ {n}" for n in dist.notes])


# --- the tab ----------------------------------------------------------------------------------------------------------
def build(engine: Engine) -> gr.Blocks:
    names, default = model_choices(engine, TASK)
    default_chat = engine.spec(TASK, default).chat
    streams: "weakref.WeakValueDictionary[int, GenerationStream]" = weakref.WeakValueDictionary()

    # The public API: plain functions, typed for gradio_client.
    @user_errors
    def generate_text(prompt: str, max_new_tokens: int = DEFAULTS.max_new_tokens,
                      temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                      top_p: float = DEFAULTS.top_p, repetition_penalty: float = DEFAULTS.repetition_penalty,
                      stop: str = "", seed: int | None = None, system_prompt: str = "", model: str = default,
                      chat: bool | None = None) -> str:
        """Generate text for ``prompt``. ``stop``: one stop sequence per line; ``seed``: empty for a random one;
        ``chat``: apply the model's chat template (empty: yes for instruct models)."""
        return engine.generate(prompt, model or None, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                               stop=parse_stop(stop), seed=parse_seed(seed), system_prompt=system_prompt or None,
                               chat=chat).text

    @user_errors
    def next_token_data(prompt: str, top_k: int = 10, temperature: float = 1.0, top_p: float = 1.0,
                        model: str = default) -> dict:
        """The model's distribution over the next token: the top-k tokens with their probabilities, the mass of the
        others, and the same after temperature / top-k / top-p reshape it."""
        return engine.next_token(prompt, model or None, top_k=top_k, temperature=temperature, top_p=top_p).to_dict()

    with gr.Blocks() as tab:
        gr.Markdown(t("generation.intro"))
        with gr.Row():
            model = gr.Dropdown(names, value=default, label="Model", scale=1)
            about = gr.Markdown(model_label(engine, TASK, default))

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Prompt", lines=4, placeholder="Ask something, or start a text…")
                    chat = gr.Checkbox(value=default_chat, label="Chat mode: use the model's chat template "
                                       "(instruct models); off = plain completion of the text")
                    system_prompt = gr.Textbox(label="System prompt (chat mode)", lines=1, visible=default_chat,
                                               placeholder="Empty: the model's own default")
                    with gr.Row():
                        run = gr.Button(t("generation.generate"), variant="primary")
                        stop_button = gr.Button("Stop", variant="stop")
                    gr.Examples(GENERATE_EXAMPLES, [prompt, chat], label="Examples",
                                example_labels=[f"{p} ({'chat' if c else 'completion'})" for p, c in GENERATE_EXAMPLES])
                with gr.Column(scale=2):
                    max_new_tokens = gr.Slider(1, 1024, DEFAULTS.max_new_tokens, step=1, label="Max new tokens")
                    temperature = gr.Slider(0, 2, DEFAULTS.temperature, step=0.05,
                                            label="Temperature (0 = greedy: always the most likely token)")
                    top_k = gr.Slider(0, 200, DEFAULTS.top_k, step=1, label="Top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1, DEFAULTS.top_p, step=0.01, label="Top-p (1 = off)")
                    repetition_penalty = gr.Slider(1, 2, DEFAULTS.repetition_penalty, step=0.05,
                                                   label="Repetition penalty (1 = off)")
                    stop = gr.Textbox(label="Stop sequences", lines=2, placeholder=r"one per line; \n = line break")
                    seed = gr.Textbox(label="Seed (same seed and settings, same text)", max_lines=1,
                                      placeholder="empty = a random seed, shown below after each run")
            output = gr.Textbox(label="Output", lines=8, buttons=["copy"], interactive=False)
            info = gr.Markdown()
            with gr.Accordion("Each token, coloured by the model's probability", open=True):
                coloured = gr.HTML()
            with gr.Accordion("Step by step: each chosen token, its probability, the entropy and the alternatives",
                              open=False):
                steps_table = gr.Dataframe(headers=STEP_HEADERS, interactive=False, wrap=True)
            request_id = gr.State(None)
            code_engine, code_plain = code_panel()

        with gr.Tab("Next-token lens") as lens_tab:
            with gr.Row():
                with gr.Column(scale=3):
                    lens_prompt = gr.Textbox(label="Context", lines=3, value=LENS_EXAMPLES[0])
                    gr.Examples([[e] for e in LENS_EXAMPLES], [lens_prompt], label="Examples")
                    with gr.Accordion("Chinese and the tokenizer", open=False):
                        gr.Markdown(t("generation.lens_note"))
                with gr.Column(scale=2):
                    lens_k = gr.Slider(1, 50, 10, step=1, label="Top-k: tokens shown, and the sampling cut-off")
                    lens_t = gr.Slider(0, 2, 1.0, step=0.05, label="Temperature (below 1 sharpens, above 1 flattens)")
                    lens_p = gr.Slider(0.05, 1, 1.0, step=0.01, label="Top-p (1 = off)")
            with gr.Row():
                predict = gr.Button("Show the next-token distribution", variant="primary")
                step = gr.Button("Step: pick a token and append it")
                reset = gr.Button("Clear the steps")
            lens_info = gr.Markdown()
            with gr.Row():
                # sort by height, set here once: a sort list sent with each update is applied one update late
                plot_kw = dict(x="token", y="probability", y_lim=[0, 1], sort="-y", x_label_angle=-40, height=340)
                before = gr.BarPlot(label="The model's distribution (temperature 1)", **plot_kw)
                after = gr.BarPlot(label="After temperature, top-k and top-p: what sampling draws from", **plot_kw)
            stepped = gr.HTML()
            lens_steps = gr.Dataframe(headers=STEP_HEADERS, interactive=False, wrap=True, label="Steps")
            with gr.Accordion("As data (what the /next_token endpoint returns)", open=False):
                raw = gr.JSON()
            lens_state = gr.State(None)  # {"prefix": the context before the first step, "steps": [TokenStep, ...]}

        # --- events -------------------------------------------------------------------------------------------------
        def on_model(name: str):
            spec = engine.spec(TASK, name)
            return model_label(engine, TASK, name), gr.Checkbox(value=spec.chat), gr.Textbox(visible=spec.chat)

        model.change(user_errors(on_model), model, [about, chat, system_prompt], api_visibility="private",
                     queue=False)
        chat.change(lambda on: gr.Textbox(visible=on), chat, system_prompt, api_visibility="private", queue=False)

        # Models trained in the Pretrain tab appear without a reload: the list is read again each time it is opened.
        # A small trained GPT reads only block_size tokens, prompt and new text together: ask for half of that.
        model.focus(lambda: gr.Dropdown(choices=model_choices(engine, TASK)[0]), None, model,
                    api_visibility="private", queue=False)

        def fit_context(name: str):
            context = engine.trained.card(name).settings.get("block_size") if engine.trained.has(name) else None
            return gr.Slider(value=max(1, context // 2)) if context and context <= 2 * DEFAULTS.max_new_tokens \
                else gr.skip()

        model.change(fit_context, model, max_new_tokens, api_visibility="private", queue=False)

        def final(result: GenerationResult, prompt: str, system_prompt: str | None):
            code = code_values(lambda: codegen.generation_code(engine, prompt, result, system_prompt or None))
            return (result.text, summary(result), coloured_html(result.tokens), step_rows(result.tokens), None, *code)

        @user_errors
        def run_stream(prompt, model, chat, system_prompt, max_new_tokens, temperature, top_k, top_p,
                       repetition_penalty, stop, seed):
            s = engine.stream(prompt, model or None, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, stop=parse_stop(stop),
                              seed=parse_seed(seed), chat=chat, system_prompt=system_prompt or None)
            streams[s.id] = s
            with s:  # leaving early (the page closed, the event cancelled) cancels the engine's request
                text = ""
                yield text, "Generating…", "", [], s.id, gr.skip(), gr.skip()
                for token in s:
                    if token.text:
                        text += token.text
                        yield text, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            yield final(s.result, prompt, system_prompt)

        @user_errors
        def stop_stream(request_id, prompt, system_prompt):
            """Stop the model's compute (not only the display), then show what was generated until then."""
            s = streams.get(request_id) if request_id is not None else None
            if s is None:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), None, gr.skip(), gr.skip()
            engine.cancel(request_id)
            try:
                return final(s.request.result(timeout=30), prompt, system_prompt)
            except Exception:  # it failed or was cancelled before its first token: nothing to show
                return gr.skip(), "Stopped.", gr.skip(), gr.skip(), None, gr.skip(), gr.skip()

        gen_outputs = [output, info, coloured, steps_table, request_id, code_engine, code_plain]
        gen_inputs = [prompt, model, chat, system_prompt, max_new_tokens, temperature, top_k, top_p,
                      repetition_penalty, stop, seed]
        loads = with_load_notice(engine, TASK)  # which model, its size and progress while it loads
        events = [trigger(loads(run_stream), gen_inputs, gen_outputs, api_visibility="private", **model_work(engine))
                  for trigger in (run.click, prompt.submit)]
        stop_button.click(stop_stream, [request_id, prompt, system_prompt], gen_outputs, cancels=events, queue=False,
                          api_visibility="private")

        # The lens.
        def show(dist: NextTokenDistribution):
            return (lens_markdown(dist), *lens_frames(dist), dist.to_dict())

        @user_errors
        def lens(prompt, model, top_k, temperature, top_p):
            return show(engine.next_token(prompt, model or None, top_k=top_k, temperature=temperature, top_p=top_p))

        @user_errors
        def lens_step(prompt, model, top_k, temperature, top_p, state):
            """Sample one token as generation would, append it to the context, and show the next distribution."""
            if not state or prompt != state["prefix"] + "".join(t.text for t in state["steps"]):
                state = {"prefix": prompt, "steps": []}  # a new or edited context starts a new walk
            result = engine.generate(prompt, model or None, max_new_tokens=1, temperature=temperature, top_k=top_k,
                                     top_p=top_p, repetition_penalty=1.0, chat=False)
            token = result.tokens[0]
            steps = state["steps"] + [token]
            text = prompt + token.text
            dist = engine.next_token(text, model or None, top_k=top_k, temperature=temperature, top_p=top_p)
            state = {"prefix": state["prefix"], "steps": steps}
            return (text, *show(dist), coloured_html(steps, state["prefix"]), step_rows(steps), state)

        lens_outputs = [lens_info, before, after, raw]
        lens_inputs = [lens_prompt, model, lens_k, lens_t, lens_p]
        for trigger in (predict.click, lens_prompt.submit):
            trigger(loads(lens), lens_inputs, lens_outputs, api_visibility="private", **model_work(engine))
        step.click(loads(lens_step), lens_inputs + [lens_state],
                   [lens_prompt, *lens_outputs, stepped, lens_steps, lens_state], api_visibility="private",
                   **model_work(engine))
        reset.click(lambda: ("", [], None), None, [stepped, lens_steps, lens_state], api_visibility="private",
                    queue=False)

        gr.api(generate_text, api_name="generate", **model_work(engine))
        gr.api(next_token_data, api_name="next_token", **model_work(engine))
    # What Start here's guided path fills (apps/shell.py): the prompt, or the lens's context in its own view.
    tab.example_inputs, tab.views, tab.view_inputs = [prompt, chat], {"lens": lens_tab}, {"lens": [lens_prompt]}
    return tab
