"""The Embeddings tab: word vectors from a language model's token-embedding table (neighbours, analogies, how a word
splits into tokens), a 2-D map of a list, sentence vectors (a similarity heatmap, semantic search, vectors to
download), and the next word as an inner product with the context vector.

Public endpoints (``gradio_client``; a list of texts is one text per line; results are JSON data):
``/embed(texts, model)``, ``/similarity(texts_a, texts_b, model)``, ``/search(query, corpus, k, model)``,
``/neighbours(word, k, model)``, ``/analogy(a, b, c, k, model)``.
"""
from __future__ import annotations

import contextvars
import csv
import html
import io
import logging

import gradio as gr
import numpy as np
import pandas as pd

from engine import Engine, InputTooLargeError, InvalidInputError
from engine.tasks.common import read_text_file
from engine.tasks.embedding import Embeddings, SimilarityMatrix
from engine.tasks.embedding_map import METHODS, WORDLISTS, EmbeddingMap, parse_lines, wordlist_text
from engine.tasks.word_vectors import InnerProducts, Neighbours

from .common import DOWNLOADS, model_choices, model_work, user_errors
from .i18n import t

log = logging.getLogger(__name__)

MAX_HEATMAP = 40  # texts in the heatmap (a 40 x 40 table still reads on a page); the API takes up to 1,000
MAP_EXAMPLE = "countries and capitals"
SENTENCES = """A man is playing a guitar.
Someone is playing an instrument.
A woman is slicing an onion.
A chef is cutting vegetables.
The stock market fell sharply today.
Share prices dropped this morning."""
CORPUS = """A man is playing a guitar on the stage.
The orchestra performed a symphony last night.
She sings in a choir every Sunday.
The stock market fell sharply today.
Interest rates will rise next month.
A chef is cutting vegetables in the kitchen.
Fresh bread is baked every morning.
The football team won the championship.
He runs ten kilometres before breakfast.
The cat is sleeping on the sofa.
Dogs love to play fetch in the park.
It is raining heavily in the city.
A storm is expected this weekend.
The new phone has a better camera.
Scientists discovered a new planet."""
NEIGHBOUR_HEADERS = ["rank", "token", "cosine similarity"]
SEARCH_HEADERS = ["rank", "score", "line", "text"]
INNER_HEADERS = ["token", "⟨vec(w), h⟩", "|vec(w)|", "cosine", "softmax of inner products", "model's probability"]


# --- formatting (plain functions, tested without a browser) -----------------------------------------------------------
def lines_of(text: str | None) -> list[str]:
    """The non-blank lines of a text box (or of an uploaded file), stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def show_token(token: str) -> str:
    """A token as a label: a leading space shown as ␣, never empty."""
    stripped = token.lstrip(" ")
    return ("␣" * (len(token) - len(stripped)) + stripped.replace("\n", "↵")) or "∅"


def pieces_markdown(result: Neighbours) -> str:
    lines = []
    for w in result.words:
        shown = " · ".join(f"`{show_token(p.token)}` ({p.token_id})" for p in w.pieces)
        count = "1 token" if len(w.pieces) == 1 else f"{len(w.pieces)} tokens, averaged"
        lines.append(f"- **{html.escape(w.word)}** → {count}: {shown}")
    lines += [f"- {note}" for note in result.notes]
    return (f"**{result.query}** in {result.model}'s token-embedding table ({result.vocab_size:,} tokens):\n"
            + "\n".join(lines))


def neighbour_rows(result: Neighbours) -> list[list]:
    return [[i + 1, show_token(n.token), round(n.score, 4)] for i, n in enumerate(result.neighbours)]


def map_frame(result: EmbeddingMap) -> pd.DataFrame:
    groups = [p.group or "all" for p in result.points]
    return pd.DataFrame({"x": [p.x for p in result.points], "y": [p.y for p in result.points],
                         "text": [p.text for p in result.points], "group": groups})


def _cell_colour(value: float) -> tuple[str, str]:
    """Background and text colours for a cosine similarity: white at 0, deep blue at 1, red below 0."""
    v = max(-1.0, min(1.0, value))
    if v >= 0:
        r, g, b = (int(255 - v * (255 - c)) for c in (33, 102, 172))
    else:
        r, g, b = (int(255 - -v * (255 - c)) for c in (178, 24, 43))
    return f"rgb({r},{g},{b})", "#fff" if abs(v) > 0.55 else "#111"


def heatmap_html(result: SimilarityMatrix) -> str:
    """The similarity matrix as a coloured table; hovering a cell names both texts."""
    def short(text: str) -> str:
        return html.escape(text if len(text) <= 48 else text[:47] + "…")

    head = "".join(f'<th title="{html.escape(t)}" style="padding:2px 4px">{j + 1}</th>'
                   for j, t in enumerate(result.texts_b))
    rows = []
    for i, (text, row) in enumerate(zip(result.texts_a, result.matrix)):
        cells = []
        for j, value in enumerate(row):
            background, colour = _cell_colour(float(value))
            tip = html.escape(f"{text} ↔ {result.texts_b[j]}: {value:.3f}")
            cells.append(f'<td title="{tip}" style="background:{background};color:{colour};text-align:center;'
                         f'padding:4px 6px;font-variant-numeric:tabular-nums">{value:.2f}</td>')
        rows.append(f'<tr><th style="text-align:right;padding:2px 8px;font-weight:normal">{i + 1}. {short(text)}'
                    f'</th>{"".join(cells)}</tr>')
    return (f'<div class="similarity-heatmap" style="overflow-x:auto"><table style="border-collapse:collapse">'
            f'<tr><th></th>{head}</tr>{"".join(rows)}</table>'
            f'<p style="font-size:0.85em">Cosine similarity of the sentence vectors ({html.escape(result.model)}): '
            "1 = same direction, 0 = unrelated; hover a cell to read both sentences.</p></div>")


def inner_rows(result: InnerProducts) -> list[list]:
    return [[show_token(c.token), round(c.inner_product, 3), round(c.embedding_norm, 3), round(c.cosine, 4),
             f"{c.prob_from_inner_products:.6f}", f"{c.model_prob:.6f}"] for c in result.candidates]


def inner_markdown(result: InnerProducts) -> str:
    check = "✓ equal within rounding" if result.agrees else "✗ NOT equal"
    lines = [f"**{result.model}**, {result.prompt_tokens} prompt tokens. Context vector *h* (the final hidden state "
             f"after the final norm): |h| = {result.context_norm:.3f}.",
             "Each logit is the inner product ⟨vec(w), h⟩ = |vec(w)| · |h| · cosine, with the *same* table the model "
             "reads its input with (tied embeddings); the softmax of those, over the whole vocabulary, is the "
             "model's next-token distribution.",
             f"Largest difference over the vocabulary between the two columns: **{result.max_abs_difference:.2e}** "
             f"(float rounding allows {result.tolerance:.1e}): {check}.",
             "The whole distribution, and how temperature, top-k and top-p reshape it: the **Next-token lens** in the "
             "Text generation tab."]
    lines += [f"- {note}" for note in result.notes]
    return "\n\n".join(lines)


def vectors_csv(result: Embeddings) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", *(f"d{i}" for i in range(result.dim))])
    for text, row in zip(result.texts, result.vectors):
        writer.writerow([text, *(f"{v:.7g}" for v in row)])
    return out.getvalue()


def write_vectors(result: Embeddings, fmt: str) -> str:
    if fmt == ".npy":
        path = DOWNLOADS.folder() / "vectors.npy"
        np.save(path, result.vectors)
        return str(path)
    return DOWNLOADS.write_text("vectors.csv", vectors_csv(result))


def _progress(progress: gr.Progress):
    """A plain callback for the engine (which reports from its worker thread) that reaches this event's bar."""
    context = contextvars.copy_context()
    return lambda fraction, message: context.run(progress, fraction, desc=message)


def build(engine: Engine) -> gr.Blocks:
    word_models, word_default = model_choices(engine, "text-generation")
    sentence_models, sentence_default = model_choices(engine, "embedding")
    map_models = ([(f"{m} (sentence vectors)", m) for m in sentence_models]
                  + [(f"{m} (word vectors: token table)", m) for m in word_models])
    max_bytes = engine.settings.max_upload_bytes

    # --- UI events ------------------------------------------------------------------------------------------------
    @user_errors
    def neighbours_ui(word: str, k: float, model: str | None):
        result = engine.neighbours(word, model or None, int(k))
        return pieces_markdown(result), neighbour_rows(result)

    @user_errors
    def analogy_ui(a: str, b: str, c: str, k: float, model: str | None):
        result = engine.analogy(a, b, c, model or None, int(k))
        return pieces_markdown(result), neighbour_rows(result)

    @user_errors
    def map_ui(text: str, model: str | None, method: str):
        texts, groups = parse_lines(text)
        result = engine.embedding_map(texts, model or None, METHOD_KEYS.get(method, "pca"), groups)
        notes = [f"**{len(result.points)} points**, {result.kind} of {result.model}, {METHODS[result.method]}."]
        return map_frame(result), "\n".join(notes + [f"- {n}" for n in result.notes])

    @user_errors
    def heatmap_ui(text: str, model: str | None):
        texts = lines_of(text)
        if len(texts) > MAX_HEATMAP:
            raise InputTooLargeError(f"The heatmap shows at most {MAX_HEATMAP} sentences, got {len(texts)}; the "
                                     "/similarity endpoint takes up to 1,000, and search takes 10,000.")
        if not texts:
            raise InvalidInputError("Type or paste some sentences first, one per line.")
        return heatmap_html(engine.similarity(texts, None, model or None))

    @user_errors
    def download_ui(text: str, model: str | None, fmt: str, progress: gr.Progress = gr.Progress()):
        result = engine.embed(lines_of(text), model or None, progress=_progress(progress))
        return write_vectors(result, fmt)

    @user_errors
    def search_ui(query: str, corpus_text: str, upload: str | None, k: float, model: str | None,
                  progress: gr.Progress = gr.Progress()):
        corpus = lines_of(read_text_file(upload, max_bytes) if upload else corpus_text)
        result = engine.search(query, corpus, model or None, int(k), progress=_progress(progress))
        rows = [[h.rank, round(h.score, 4), h.index + 1, h.text] for h in result.hits]
        how = "found in the cache of encoded corpora" if result.cached else "encoded now, and kept for the next search"
        return rows, (f"{result.corpus_size:,} sentences ({how}); answered in {1000 * result.seconds:.0f} ms by "
                      f"{result.model}.")

    @user_errors
    def inner_ui(prompt: str, k: float, model: str | None):
        result = engine.logits_as_inner_products(prompt, model or None, int(k))
        return inner_rows(result), inner_markdown(result)

    def example_list(name: str) -> str:
        return wordlist_text(name) if name in WORDLISTS else ""

    # --- API endpoints (one text per line; JSON results) ---------------------------------------------------------
    @user_errors
    def embed(texts: str, model: str = "") -> dict:
        """Unit-length sentence vectors of ``texts`` (one per line, at most 10,000): model, dim, texts, vectors."""
        return engine.embed(lines_of(texts), model or None).to_dict()

    @user_errors
    def similarity(texts_a: str, texts_b: str = "", model: str = "") -> dict:
        """Cosine similarities of each line of ``texts_a`` with each line of ``texts_b`` (``texts_a`` with itself
        when ``texts_b`` is empty): model, texts_a, texts_b, matrix (rows follow texts_a)."""
        return engine.similarity(lines_of(texts_a), lines_of(texts_b) or None, model or None).to_dict()

    @user_errors
    def search(query: str, corpus: str, k: int = 10, model: str = "") -> dict:
        """The ``k`` lines of ``corpus`` (at most 10,000) closest in meaning to ``query``, best first: hits with rank,
        index (0-based line), text and score (cosine); a corpus searched before is found in the cache."""
        return engine.search(query, lines_of(corpus), model or None, k).to_dict()

    @user_errors
    def neighbours(word: str, k: int = 10, model: str = "") -> dict:
        """The ``k`` tokens nearest to ``word`` in a text-generation model's token-embedding table (SmolLM2 by
        default), by cosine similarity; how the word split into tokens."""
        return engine.neighbours(word, model or None, k).to_dict()

    @user_errors
    def analogy(a: str, b: str, c: str, k: int = 10, model: str = "") -> dict:
        """The ``k`` tokens nearest to vec(a) - vec(b) + vec(c) (king - man + woman), the inputs left out."""
        return engine.analogy(a, b, c, model or None, k).to_dict()

    METHOD_KEYS = {label: key for key, label in METHODS.items()}
    with gr.Blocks() as tab:
        gr.Markdown(t("embeddings.intro"))
        with gr.Tab(t("embeddings.tab_words")):
            word_model = gr.Dropdown(word_models, value=word_default, label=t("embeddings.table_of"))
            with gr.Row():
                with gr.Column():
                    word = gr.Textbox(label=t("embeddings.word"), value="king", max_length=100)
                    k_words = gr.Slider(1, 50, value=10, step=1, label=t("embeddings.neighbours_to_show"))
                    neighbours_button = gr.Button(t("embeddings.find_neighbours"), variant="primary")
                with gr.Column():
                    pieces = gr.Markdown()
                    neighbours_table = gr.Dataframe(headers=NEIGHBOUR_HEADERS, label=t("embeddings.nearest_tokens"),
                                                    interactive=False)
            gr.Markdown(t("embeddings.analogy_note"))
            with gr.Row():
                a = gr.Textbox(label="a", value="king", max_length=100)
                b = gr.Textbox(label=t("embeddings.b_minus"), value="man", max_length=100)
                c = gr.Textbox(label=t("embeddings.c_plus"), value="woman", max_length=100)
            analogy_button = gr.Button(t("embeddings.solve_analogy"), variant="secondary")
            with gr.Row():
                analogy_pieces = gr.Markdown()
                analogy_table = gr.Dataframe(headers=NEIGHBOUR_HEADERS, label="a − b + c ≈", interactive=False)
        with gr.Tab(t("embeddings.tab_map")):
            with gr.Row():
                with gr.Column(scale=1):
                    example = gr.Dropdown(list(WORDLISTS), value=MAP_EXAMPLE, label=t("embeddings.example_list"))
                    items = gr.Textbox(label=t("embeddings.items"), lines=14,
                                       value=wordlist_text(MAP_EXAMPLE))
                    map_model = gr.Dropdown(map_models, value=sentence_default, label=t("embeddings.vectors_from"))
                    method = gr.Radio(list(METHODS.values()), value="PCA", label=t("embeddings.method"),
                                      info=t("embeddings.method_info"))
                    map_button = gr.Button(t("embeddings.draw_map"), variant="primary")
                with gr.Column(scale=2):
                    # No fixed height: with one, gradio 6 cuts off the colour legend below the chart.
                    plot = gr.ScatterPlot(x="x", y="y", color="group", tooltip=["text", "group"],
                                          label=t("embeddings.map_plot"), x_title="axis 1",
                                          y_title="axis 2")
                    map_notes = gr.Markdown()
        with gr.Tab(t("embeddings.tab_sentences")):
            sentence_model = gr.Dropdown(sentence_models, value=sentence_default,
                                         label=t("embeddings.sentence_encoder"))
            with gr.Row():
                with gr.Column():
                    sentences = gr.Textbox(label=t("embeddings.sentences"), lines=8, value=SENTENCES)
                    heatmap_button = gr.Button(t("embeddings.show_similarity"), variant="primary")
                    with gr.Row():
                        fmt = gr.Radio(["CSV", ".npy"], value="CSV", label=t("embeddings.vectors_as"), scale=1)
                        download_button = gr.Button(t("embeddings.download_vectors"), scale=1)
                    download = gr.File(label=t("embeddings.vectors_file"), height=90)
                with gr.Column():
                    heatmap = gr.HTML(label=t("embeddings.heatmap"))
            gr.Markdown(t("embeddings.search_note"))
            with gr.Row():
                with gr.Column():
                    query = gr.Textbox(label=t("embeddings.query"), value="music")
                    corpus = gr.Textbox(label=t("embeddings.corpus"), lines=8, value=CORPUS)
                    upload = gr.File(label=t("embeddings.corpus_file"), file_types=[".txt"], type="filepath", height=90)
                    k_search = gr.Slider(1, 50, value=5, step=1, label=t("embeddings.results"))
                    search_button = gr.Button(t("embeddings.search"), variant="primary")
                with gr.Column():
                    hits = gr.Dataframe(headers=SEARCH_HEADERS, label=t("embeddings.closest"), interactive=False,
                                        wrap=True)
                    search_notes = gr.Markdown()
        with gr.Tab(t("embeddings.tab_inner")):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label=t("embeddings.prompt"), value="The capital of France is", max_length=2000)
                    inner_model = gr.Dropdown(word_models, value=word_default, label=t("embeddings.tied_model"))
                    k_inner = gr.Slider(1, 30, value=10, step=1, label=t("embeddings.candidates"))
                    inner_button = gr.Button(t("embeddings.show_inner"), variant="primary")
                with gr.Column():
                    inner_notes = gr.Markdown()
            inner_table = gr.Dataframe(headers=INNER_HEADERS, label=t("embeddings.next_candidates"), interactive=False)

        work = model_work(engine)
        neighbours_button.click(neighbours_ui, [word, k_words, word_model], [pieces, neighbours_table],
                                api_visibility="private", **work)
        word.submit(neighbours_ui, [word, k_words, word_model], [pieces, neighbours_table], api_visibility="private",
                    **work)
        analogy_button.click(analogy_ui, [a, b, c, k_words, word_model], [analogy_pieces, analogy_table],
                             api_visibility="private", **work)
        example.change(example_list, example, items, api_visibility="private", queue=False)
        map_button.click(map_ui, [items, map_model, method], [plot, map_notes], api_visibility="private", **work)
        heatmap_button.click(heatmap_ui, [sentences, sentence_model], heatmap, api_visibility="private", **work)
        download_button.click(download_ui, [sentences, sentence_model, fmt], download, api_visibility="private",
                              **work)
        search_button.click(search_ui, [query, corpus, upload, k_search, sentence_model], [hits, search_notes],
                            api_visibility="private", **work)
        query.submit(search_ui, [query, corpus, upload, k_search, sentence_model], [hits, search_notes],
                     api_visibility="private", **work)
        inner_button.click(inner_ui, [prompt, k_inner, inner_model], [inner_table, inner_notes],
                           api_visibility="private", **work)
        # Models trained in the Pretrain tab appear without a restart: a word-model list is read again when opened.
        for dropdown in (word_model, inner_model):
            dropdown.focus(lambda: gr.Dropdown(choices=model_choices(engine, "text-generation")[0]), None, dropdown,
                           api_visibility="private", queue=False)
        for fn, name in ((embed, "embed"), (similarity, "similarity"), (search, "search"), (neighbours, "neighbours"),
                         (analogy, "analogy")):
            gr.api(fn, api_name=name, **work)
    return tab
