"""The Attention tab: inside the model. For a prompt (a generative model) or a sentence (an encoder), a heatmap of how
much each token attends to every other token, per layer and head, with the heads that attend most to the previous
token and to the first token picked out.

Public API endpoint (``gradio_client``): ``/attention`` (``text``, ``model``, ``layer``) returns the maps as data.
"""
from __future__ import annotations

import html
import logging

import gradio as gr

from engine import Engine
from engine.tasks.attention import SUPPORTED, AttentionMaps, HeadPick, attention_spec

from .common import model_work, user_errors
from .i18n import t
from .loading import ensure_spec_loaded

log = logging.getLogger(__name__)

EXAMPLES = [  # (text, model; None = the default text generation model)
    ("The cat sat on the mat because it was tired.", None),
    ("我 吃了一个 饼干", None),
    ("When was the Eiffel Tower completed? It was completed in 1889.", "all-MiniLM-L6-v2"),
    ("1, 2, 3, 4, 5, 6, 7, 8", None),
]


def model_choices(engine: Engine) -> tuple[list[tuple[str, str]], str]:
    """Every registered model that reads text with self-attention (label: name and task), and the default."""
    specs = [engine.registry.get(n) for n in engine.registry.names()]
    choices = [(f"{s.name} ({s.task})", s.name) for s in specs if s.family in SUPPORTED]
    return choices, engine.registry.default("text-generation").name


def _label(token: str) -> str:
    return html.escape(token.replace(" ", "␣").replace("\n", "↵") or "∅")


def heatmap_html(maps: AttentionMaps, layer: int, head: int, cell: int = 22) -> str:
    """One head's map as a table: row i is token i reading, column j is token j being read; darker = more attention.
    Hover a cell for its weight."""
    w = maps.head(layer, head)
    t = len(maps.tokens)
    cell = max(8, min(cell, 640 // max(t, 1)))
    head_cells = "".join(f'<th style="writing-mode:vertical-rl;font-weight:normal;font-size:0.8em;'
                         f'padding:2px">{_label(tok)}</th>' for tok in maps.tokens)
    rows = []
    for i, tok in enumerate(maps.tokens):
        cells = []
        for j in range(t):
            value = float(w[i, j])
            title = html.escape(f"{maps.tokens[i]!r} → {maps.tokens[j]!r}: {value:.3f}")
            masked = maps.causal and j > i
            style = ("background:repeating-linear-gradient(45deg,transparent,transparent 3px,"
                     "var(--border-color-primary) 3px,var(--border-color-primary) 4px)" if masked
                     else f"background:rgba(37,99,235,{value:.3f})")
            cells.append(f'<td title="{title}" style="{style};width:{cell}px;height:{cell}px;padding:0"></td>')
        rows.append(f'<tr><th style="text-align:right;font-weight:normal;font-size:0.8em;padding:0 4px;'
                    f'white-space:nowrap">{_label(tok)}</th>{"".join(cells)}</tr>')
    caption = (f"Layer {layer}, head {head}: row = the token reading, column = the token it reads; darker blue = more "
               f"attention (each row sums to 1)" + ("; hatched = the future, which a causal model cannot see"
                                                    if maps.causal else ""))
    return (f'<div style="overflow:auto" data-testid="attention-heatmap"><table style="border-collapse:collapse">'
            f'<caption style="caption-side:bottom;font-size:0.85em;padding-top:6px">{html.escape(caption)}</caption>'
            f'<tr><th></th>{head_cells}</tr>{"".join(rows)}</table></div>')


def heads_overview_html(maps: AttentionMaps, layer: int) -> str:
    """Every head of ``layer`` as a thumbnail, side by side: the patterns (diagonal, first column, spread) at a
    glance."""
    thumbs = []
    t = len(maps.tokens)
    px = max(2, min(6, 120 // max(t, 1)))
    for h in range(maps.num_heads):
        w = maps.head(layer, h)
        cells = "".join("<tr>" + "".join(f'<td style="background:rgba(37,99,235,{float(w[i, j]):.2f});width:{px}px;'
                                         f'height:{px}px;padding:0"></td>' for j in range(t)) + "</tr>"
                        for i in range(t))
        thumbs.append(f'<figure style="margin:4px;display:inline-block;text-align:center">'
                      f'<table style="border-collapse:collapse;border:1px solid var(--border-color-primary)">{cells}'
                      f'</table><figcaption style="font-size:0.75em">head {h}</figcaption></figure>')
    return f'<div style="display:flex;flex-wrap:wrap">{"".join(thumbs)}</div>'


def summary_markdown(maps: AttentionMaps) -> str:
    reading = ("causal (each token sees only the tokens before it)" if maps.causal
               else "bidirectional (every token sees every token)")
    lines = [f"**{maps.model}** · {len(maps.tokens)} tokens · {maps.num_layers} layers × {maps.num_heads} heads · "
             f"{reading}"]
    if maps.previous_token_head:
        p, f = maps.previous_token_head, maps.first_token_head
        lines.append(f"**Previous-token head:** layer {p.layer}, head {p.head} (on average {p.score:.0%} of each "
                     "token's attention goes to the token just before it: how a model copies what came before).")
        lines.append(f"**First-token head:** layer {f.layer}, head {f.head} ({f.score:.0%} of each token's attention "
                     "goes to the first token: an *attention sink*, where a head with nothing to look for parks its "
                     "attention).")
    lines.append("Tokens: " + " · ".join(f"`{tok}`" for tok in maps.tokens))
    return "\n\n".join(lines)


def build(engine: Engine) -> gr.Blocks:
    choices, default = model_choices(engine)

    @user_errors
    def attention_data(text: str, model: str = "", layer: int | None = None) -> dict:
        """Attention maps of ``model`` (empty: the default text generation model) over ``text``: tokens, the picked
        heads, and ``weights[layer][head][i][j]`` for every layer (or only ``layer``)."""
        return engine.attention(text, model or None, None if layer in (None, "") else int(layer)).to_dict()

    with gr.Blocks() as tab:
        gr.Markdown(t("attention.intro"))
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label=t("attention.text"), lines=2, value=EXAMPLES[0][0])
                model = gr.Dropdown(choices, value=default, label=t("common.model"))
                show = gr.Button(t("attention.show"), variant="primary")
                known = {value for _, value in choices}
                gr.Examples([[text_, model_ if model_ in known else default] for text_, model_ in EXAMPLES],
                            [text, model], label=t("common.examples"),
                            example_labels=[text_ + (f" ({model_})" if model_ else "") for text_, model_ in EXAMPLES])
            with gr.Column(scale=2):
                summary = gr.Markdown()
                with gr.Row():
                    to_previous = gr.Button(t("attention.previous_head"), size="sm")
                    to_first = gr.Button(t("attention.first_head"), size="sm")
                layer = gr.Slider(0, 1, 0, step=1, label=t("attention.layer"))
                head = gr.Slider(0, 1, 0, step=1, label=t("attention.head"))
        heatmap = gr.HTML()
        with gr.Accordion(t("attention.all_heads"), open=True):
            overview = gr.HTML()
        maps_state = gr.State(None)

        def views(maps: AttentionMaps | None, layer_value: float, head_value: float):
            if maps is None:
                return gr.skip(), gr.skip()
            layer_value = int(min(max(layer_value, 0), maps.num_layers - 1))
            head_value = int(min(max(head_value, 0), maps.num_heads - 1))
            return heatmap_html(maps, layer_value, head_value), heads_overview_html(maps, layer_value)

        @user_errors
        def compute(text: str, model: str | None, progress=gr.Progress()):
            # the eager-attention copy loads on first use: say which model, its size, and show progress
            base = engine.registry.get(model) if model else engine.spec("text-generation")
            ensure_spec_loaded(engine, attention_spec(base), progress)
            maps = engine.attention(text, model or None)
            pick = maps.previous_token_head or HeadPick(0, 0, 0.0)  # a one-token text picks no head
            return (maps, summary_markdown(maps),
                    gr.Slider(maximum=maps.num_layers - 1, value=pick.layer),
                    gr.Slider(maximum=maps.num_heads - 1, value=pick.head),
                    *views(maps, pick.layer, pick.head))

        outputs = [maps_state, summary, layer, head, heatmap, overview]
        for trigger in (show.click, text.submit):
            trigger(compute, [text, model], outputs, api_visibility="private", **model_work(engine))
        for slider in (layer, head):
            slider.release(views, [maps_state, layer, head], [heatmap, overview], api_visibility="private",
                           queue=False)

        def jump(maps: AttentionMaps | None, which: str):
            pick = getattr(maps, which, None) if maps is not None else None
            if pick is None:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return (gr.Slider(value=pick.layer), gr.Slider(value=pick.head), *views(maps, pick.layer, pick.head))

        to_previous.click(lambda m: jump(m, "previous_token_head"), maps_state, [layer, head, heatmap, overview],
                          api_visibility="private", queue=False)
        to_first.click(lambda m: jump(m, "first_token_head"), maps_state, [layer, head, heatmap, overview],
                       api_visibility="private", queue=False)
        gr.api(attention_data, api_name="attention", **model_work(engine))
    tab.example_inputs = [text]  # what Start here's guided path fills (apps/shell.py)
    return tab

