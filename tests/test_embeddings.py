"""Embeddings: word vectors from a tiny Llama whose token table holds planted vectors (neighbours, analogies, the
inputs left out), the tied-embedding identity (softmax of inner products = the model's probabilities, in float64,
within a derived rounding bound), a character-level model's vocabulary limits, 2-D maps, the packaged MiniLM against
reference vectors stored here, search and its corpus cache, bad inputs, and each endpoint through gradio_client."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app_process import serving
import tiny_models
from engine import (Engine, InputTooLargeError, InvalidInputError, InvalidOptionsError, ModelSpec, Registry,
                    Settings)
from engine.tasks import embedding_map, word_vectors
from engine.tasks.embedding import CorpusCache


# --- tiny models with planted vectors ------------------------------------------------------------------------------
def _single_tokens(tokenizer, words):
    """The words that are one token with a leading space (as inside a sentence), with that token's id."""
    found = {}
    for w in words:
        ids = tokenizer.encode(" " + w, add_special_tokens=False)
        if len(ids) == 1 and len(tokenizer.encode(w, add_special_tokens=False)) >= 1:
            found[w] = ids[0]
    return found


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny tied Llama whose token table holds, along orthogonal axes e0..e5 (hidden size 64, the other rows small
    random vectors): cat = e0, dog = e0 + 0.1 e1 (cat's neighbour); for the analogy, king = e2 + e3, man = e3,
    woman = e4, queen = e2 + e4 (king - man + woman = queen exactly); and the same word without its space ("cat")
    as a variant of " cat" that must be left out of cat's neighbours."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_models.build_causal_lm(tmp_path_factory.mktemp("planted"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = _single_tokens(tokenizer, ["cat", "dog", "house", "car", "book", "tree", "city", "river", "bird", "child"])
    assert len(words) >= 6, words
    cat, dog, king, man, woman, queen = list(words)[:6]
    model = AutoModelForCausalLM.from_pretrained(folder)
    e = torch.eye(model.config.hidden_size)
    with torch.no_grad():
        table = model.get_input_embeddings().weight
        table.mul_(0.2)  # noise rows: cosine with a planted axis well under 0.9
        plant = {cat: e[0], dog: e[0] + 0.1 * e[1], king: e[2] + e[3], man: e[3], woman: e[4], queen: e[2] + e[4]}
        for w, vec in plant.items():
            table[words[w]] = vec
        bare = tokenizer.encode(cat, add_special_tokens=False)
        if len(bare) == 1 and bare[0] != words[cat]:
            table[bare[0]] = e[0]  # "cat" without the space: a variant of the input, same vector
    model.save_pretrained(folder)
    names = dict(cat=cat, dog=dog, king=king, man=man, woman=woman, queen=queen)
    return folder, names, words, (bare[0] if len(bare) == 1 else None)


def _char_level(folder):
    """A tiny tied Llama with a character vocabulary (BPE without merges), as a model pretrained in the Pretrain
    tab may have: lowercase letters, a space and a few marks, plus an unknown token."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = ["[UNK]", "[EOS]", " ", *"abcdefghijklmnopqrstuvwxyz.,"]
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[], unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]",
                                        model_max_length=64)
    config = LlamaConfig(vocab_size=len(chars), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _untied(source, folder):
    """The tiny Llama with its output matrix untied from the input table (and different)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.02)
    model.config.tie_word_embeddings = False
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(planted, tiny_gpt2, tmp_path_factory):
    registry = Registry()
    registry.add(ModelSpec("planted", "text-generation", "causal-lm", f"path:{planted[0]}", default=True))
    registry.add(ModelSpec("tiny-gpt2", "text-generation", "causal-lm", f"path:{tiny_gpt2}"))
    registry.add(ModelSpec("tiny-chars", "text-generation", "causal-lm",
                           f"path:{_char_level(tmp_path_factory.mktemp('chars'))}"))
    registry.add(ModelSpec("tiny-untied", "text-generation", "causal-lm",
                           f"path:{_untied(planted[0], tmp_path_factory.mktemp('untied'))}"))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, device="cpu",
                             dtype="float32"), registry)
    yield engine
    engine.close()


# --- word vectors ------------------------------------------------------------------------------------------------
def test_neighbours_of_a_planted_word(engine, planted):
    _, w, ids, bare = planted
    result = engine.neighbours(w["cat"], k=3)
    assert result.model == "planted" and result.query == w["cat"]
    assert [p.token_id for p in result.words[0].pieces] == [ids[w["cat"]]]  # the spaced spelling: one token
    top = result.neighbours[0]
    assert top.token_id == ids[w["dog"]] and top.token.strip() == w["dog"]
    assert top.score == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)  # cos(e0, e0 + 0.1 e1)
    assert all(n.score < 0.9 for n in result.neighbours[1:])  # the noise rows
    left_out = {ids[w["cat"]]} | ({bare} if bare is not None else set())
    assert not left_out & {n.token_id for n in result.neighbours}
    assert [n.score for n in result.neighbours] == sorted((n.score for n in result.neighbours), reverse=True)


def test_analogy_arithmetic_on_planted_vectors(engine, planted):
    _, w, ids, _ = planted
    result = engine.analogy(w["king"], w["man"], w["woman"], k=5)
    assert result.query == f"{w['king']} - {w['man']} + {w['woman']}"
    assert result.neighbours[0].token_id == ids[w["queen"]]
    assert result.neighbours[0].score == pytest.approx(1.0, abs=1e-6)  # e2 + e3 - e3 + e4 = queen exactly
    inputs = {ids[w[x]] for x in ("king", "man", "woman")}
    assert not inputs & {n.token_id for n in result.neighbours}


def test_analogy_leaves_out_an_input_that_would_win(engine, planted):
    """king - woman + woman = king: king itself would score 1; the answer is the next nearest, not an input."""
    _, w, ids, _ = planted
    result = engine.analogy(w["king"], w["woman"], w["woman"], k=3)
    assert result.neighbours[0].token_id not in {ids[w["king"]], ids[w["woman"]]}
    assert result.neighbours[0].score < 0.999


def test_a_word_of_several_tokens_is_the_mean_of_its_pieces(engine):
    served = word_vectors.causal_lm(engine, "planted")
    word = "xylophonequartz"
    result = engine.word_vector(word)
    assert len(result.pieces) > 1 and "mean of their embeddings" in result.note
    table = served.model.get_input_embeddings().weight.detach().double()
    expected = table[[p.token_id for p in result.pieces]].mean(0).numpy()
    np.testing.assert_allclose(result.vector, expected, rtol=0, atol=1e-6)  # float32 mean of a few rows of ~1
    assert engine.neighbours(word, k=2).notes == (result.note,)


def test_tied_embedding_identity(engine):
    """softmax(<vec(w), h>) over the vocabulary, computed in float64 from the token table, equals the probabilities
    of the model's own forward pass within the rounding bound derived from the dtype and the reduction size."""
    for model in ("planted", "tiny-gpt2"):
        result = engine.logits_as_inner_products("The cat is big.", model, k=5)
        assert result.agrees and result.max_abs_difference <= result.tolerance, result
        assert result.tolerance < 1e-3  # the bound is tight enough to mean something at this size
        lens = engine.next_token("The cat is big.", model, top_k=5, temperature=1.0)
        assert [c.token_id for c in result.candidates] == [t.token_id for t in lens.top]
        for c, t in zip(result.candidates, lens.top):
            assert c.prob_from_inner_products == pytest.approx(t.prob, abs=result.tolerance + 1e-6)
            assert c.inner_product == pytest.approx(c.embedding_norm * result.context_norm * c.cosine, rel=1e-9)


def test_untied_models_are_refused_with_the_alternative(engine):
    with pytest.raises(InvalidOptionsError, match="does not tie its input and output embeddings.*SmolLM2"):
        engine.logits_as_inner_products("The cat", "tiny-untied")


def test_character_model_words_and_unknown_characters(engine):
    result = engine.neighbours("cab", "tiny-chars", k=3)
    assert [p.token for p in result.words[0].pieces] == ["c", "a", "b"]  # no space token: fewer pieces
    assert "3 tokens" in result.notes[0] and "mean" in result.notes[0]
    with pytest.raises(InvalidInputError, match=r"'Ω'.*not in the vocabulary of tiny-chars"):
        engine.neighbours("Ωmega", "tiny-chars")
    with pytest.raises(InvalidInputError, match=r"'Z'"):
        engine.analogy("cat", "Zed", "dog", "tiny-chars")


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.neighbours("   "), InvalidInputError, "empty"),
    (lambda e: e.neighbours("cat", k=0), InvalidOptionsError, "k must be a whole number from 1"),
    (lambda e: e.neighbours("cat", k=10_000), InvalidOptionsError, "from 1 to 200"),
    (lambda e: e.neighbours("a " * 60), InvalidInputError, "limit is 100"),
    (lambda e: e.neighbours("cat", model="nope"), Exception, "Unknown model 'nope'"),
])
def test_bad_word_inputs(engine, call, error, message):
    with pytest.raises(error, match=message):
        call(engine)


# --- maps ----------------------------------------------------------------------------------------------------------
def test_pca_matches_scikit_learn_and_is_deterministic():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 6)) * [5.0, 2.0, 1.0, 0.5, 0.1, 0.1]).astype(np.float32)
    coords, explained = embedding_map.pca(x)
    reference = PCA(n_components=2).fit(x.astype(np.float64))
    expected = reference.transform(x.astype(np.float64))
    np.testing.assert_allclose(np.abs(coords), np.abs(expected), atol=1e-9)  # the same axes, up to their sign
    np.testing.assert_allclose(explained, reference.explained_variance_ratio_, atol=1e-12)
    again, _ = embedding_map.pca(x[::-1].copy())
    np.testing.assert_allclose(again[::-1], coords, atol=1e-9)  # the sign is fixed by the data, not the order
    two, explained2 = embedding_map.pca(x[:2])  # two points: one direction holds all the variance
    assert two.shape == (2, 2) and explained2[0] == pytest.approx(1.0) and explained2[1] < 1e-12
    one_axis, explained1 = embedding_map.pca(x[:, :1])  # one dimension: y is padded with zeros
    assert one_axis.shape == (50, 2) and not one_axis[:, 1].any() and explained1 == (1.0, 0.0)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_map_of_word_vectors_with_groups(engine, planted, method):
    _, w, _, _ = planted
    texts = [w["cat"], w["dog"], w["king"], w["man"], w["woman"], w["queen"]]
    groups = ["animal", "animal", "person", "person", "person", "person"]
    result = engine.embedding_map(texts, "planted", method, groups)
    assert result.kind == "word vectors" and result.method == method
    assert [(p.text, p.group) for p in result.points] == list(zip(texts, groups))
    assert all(np.isfinite([p.x, p.y]).all() for p in result.points)
    assert result.to_dict()["points"][0]["text"] == texts[0]


def test_bundled_lists_parse_with_groups():
    for name in embedding_map.WORDLISTS:
        texts, groups = embedding_map.wordlist(name)
        assert len(texts) >= 20 and groups is not None and all(groups) and len(set(texts)) == len(texts)
    assert embedding_map.parse_lines("a | x\n\n b \nc|y") == (["a", "b", "c"], ["x", "", "y"])
    assert embedding_map.parse_lines("one\ntwo") == (["one", "two"], None)


@pytest.mark.parametrize("texts, error, message", [
    (["a", "b"], InvalidInputError, "at least 3"),
    (["w"] * 2001, InputTooLargeError, "at most 2,000"),
])
def test_bad_map_inputs(engine, texts, error, message):
    with pytest.raises(error, match=message):
        engine.embedding_map(texts, "planted")
    with pytest.raises(InvalidOptionsError, match="choose one of: pca, tsne, umap"):
        engine.embedding_map(["a", "b", "c"], "planted", method="mds")


# --- the packaged MiniLM -----------------------------------------------------------------------------------------
REFERENCE_SENTENCES = ("A man is playing a guitar.", "Someone is playing an instrument.",
                       "The stock market fell sharply today.")
# Computed with this engine (fp32, CPU) when these tests were written, and equal to sentence-transformers' encode of
# the same model (a difference of 0.0 on these three; bench/embeddings.py checks 10,000 sentences): the first 8
# components of each unit vector, and the three cosine similarities.
REFERENCE_HEAD = np.array([
    [0.02166408, -0.00486423, -0.00964911, -0.06340123, -0.16749352, 0.00467644, 0.08059979, -0.02414211],
    [0.03143713, 0.00880755, 0.00250527, -0.09471142, -0.19351035, 0.05605701, 0.10960750, 0.04611445],
    [0.06045498, 0.00544528, 0.07656571, 0.05382948, -0.01479301, -0.00609629, -0.02937730, 0.05371527],
])
REFERENCE_COSINES = {(0, 1): 0.6752116, (0, 2): -0.0540273, (1, 2): -0.0591296}
# Tolerance: the same float32 model on another CPU (AVX2, AVX-512, AMX) or on CUDA sums in another order. A dot
# product of length K in float32 is exact to gamma_K = K u (u = 2^-24) of the sum of the magnitudes; the longest
# reduction in MiniLM is K = 1536 (the feed-forward), gamma = 9.2e-5 relative, and LayerNorm renormalises after each
# block. Components of these unit vectors are at most ~0.2, so 1e-4 absolute holds with room while still catching
# any change of pooling, truncation or normalisation (which move components by 1e-2 or more).
REFERENCE_ATOL = 1e-4


@pytest.fixture(scope="module")
def minilm(offline_engine):
    return offline_engine


def test_minilm_vectors_match_the_stored_reference(minilm):
    result = minilm.embed(list(REFERENCE_SENTENCES))
    assert result.model == "all-MiniLM-L6-v2" and result.vectors.shape == (3, 384) and result.dim == 384
    np.testing.assert_allclose(np.linalg.norm(result.vectors.astype(np.float64), axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(result.vectors[:, :8], REFERENCE_HEAD, rtol=0, atol=REFERENCE_ATOL)
    sims = result.similarity()
    for (i, j), cosine in REFERENCE_COSINES.items():
        assert sims[i, j] == pytest.approx(cosine, abs=REFERENCE_ATOL)
    assert sims[0, 1] > 0.5 > sims[0, 2]  # the guitar sentences are close; the stock market is not


def test_bf16_encoder_keeps_every_vector_within_the_issues_cosine(minilm, tmp_path_factory):
    """Reduced precision judged on real weights: the packaged MiniLM in bf16 (what ``encoder_dtype`` auto picks on a
    CPU with bf16 units) against fp32, on sentences of every length the bench uses: every cosine at least 0.99."""
    import csv
    from pathlib import Path

    from engine.device import choose_device, cpu_bf16_units

    repo = Path(__file__).resolve().parents[1]
    models_cache = repo / ".cache" / "test-models"  # the packaged conversion the offline_engine fixture made
    reviews = repo / "assets" / "datasets" / "reviews-test.csv"
    with open(reviews, newline="", encoding="utf-8") as f:
        texts = list(REFERENCE_SENTENCES) + [row["text"] for row in csv.DictReader(f)]
    fp32 = minilm.embed(texts).vectors.astype(np.float64)
    engine = Engine(Settings(cache_dir=models_cache, offline=True, device="cpu", dtype="float32",
                             encoder_dtype="bfloat16"))
    try:
        assert engine.policy.encoder_dtype == torch.bfloat16 and engine.policy.dtype == torch.float32
        bf16 = engine.embed(texts).vectors.astype(np.float64)
    finally:
        engine.close()
    cosines = (fp32 * bf16).sum(1)
    assert cosines.min() >= 0.99, cosines.min()
    assert np.abs(fp32 - bf16).max() > 1e-6  # it did run in bf16
    # the policy: auto follows an explicit dtype, and picks bf16 only on a CPU with bf16 units
    assert choose_device("cpu", "float32").encoder_dtype == torch.float32
    auto = choose_device("cpu", "auto")
    assert auto.encoder_dtype == (torch.bfloat16 if cpu_bf16_units() else torch.float32)
    assert choose_device("cpu", "auto", encoder_dtype="float32").encoder_dtype == torch.float32
    with pytest.raises(InvalidOptionsError, match="encoder_dtype"):
        choose_device("cpu", "auto", encoder_dtype="int3")


def test_a_texts_vector_does_not_depend_on_its_batch(minilm):
    alone = minilm.embed("A man is playing a guitar.").vectors[0]
    together = minilm.embed(["x " * 200, "A man is playing a guitar.", "Hi"] * 30).vectors[1]
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)  # padding and batch neighbours change nothing


def test_similarity_matrix(minilm):
    square = minilm.similarity(list(REFERENCE_SENTENCES))
    assert square.matrix.shape == (3, 3)
    np.testing.assert_allclose(square.matrix, square.matrix.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(square.matrix), 1.0, atol=1e-5)
    rect = minilm.similarity(REFERENCE_SENTENCES[:1], list(REFERENCE_SENTENCES[1:]))
    assert rect.matrix.shape == (1, 2) and rect.matrix[0, 0] == pytest.approx(square.matrix[0, 1], abs=1e-5)
    assert rect.to_dict()["texts_b"] == list(REFERENCE_SENTENCES[1:])


def test_search_ranks_and_caches_the_corpus(minilm):
    corpus = ["The stock market fell.", "A man is playing a guitar.", "The cat sleeps.", "An orchestra played."] * 3
    corpus = [f"{s} ({i})" for i, s in enumerate(corpus)]
    first = minilm.search("music", corpus, k=4)
    assert not first.cached and first.corpus_size == 12
    assert [h.rank for h in first.hits] == [1, 2, 3, 4]
    assert all("guitar" in h.text or "orchestra" in h.text for h in first.hits)
    assert [h.score for h in first.hits] == sorted((h.score for h in first.hits), reverse=True)
    assert all(corpus[h.index] == h.text for h in first.hits)
    second = minilm.search("music", corpus, k=4)
    assert second.cached and second.hits == first.hits
    assert minilm.search("music", corpus[:3], k=50).corpus_size == 3  # k beyond the corpus: the whole corpus
    assert len(minilm.search("music", corpus[:3], k=50).hits) == 3
    assert CorpusCache.key(["ab", "c"]) != CorpusCache.key(["a", "bc"])


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.embed([]), InvalidInputError, "list is empty"),
    (lambda e: e.embed(["x"] * 100_000), InputTooLargeError, "100,000 items; the limit is 10,000"),
    (lambda e: e.embed(["fine", "  "]), InvalidInputError, "texts item 2 is empty"),
    (lambda e: e.search("q", ["x"] * 10_001), InputTooLargeError, "the limit is 10,000"),
    (lambda e: e.search("q", ["x"], k=0), InvalidOptionsError, "k must be a whole number"),
    (lambda e: e.similarity(["x"] * 1001), InputTooLargeError, "limit is 1,000"),
    (lambda e: e.embed(["a"], model="SmolLM2-135M-Instruct"), InvalidOptionsError,
     "not a sentence encoder.*all-MiniLM-L6-v2.*word vectors"),
    (lambda e: e.neighbours("king", model="all-MiniLM-L6-v2"), InvalidOptionsError,
     "not a text-generation model.*SmolLM2-135M-Instruct"),
])
def test_bad_inputs_get_messages(minilm, call, error, message):
    with pytest.raises(error, match=message):
        call(minilm)


# --- the endpoints -------------------------------------------------------------------------------------------------
def test_endpoints_through_gradio_client(offline_engine):
    from gradio_client.exceptions import AppError

    import apps.embeddings

    with serving(apps.embeddings.build(offline_engine)) as client:
        embedded = client.predict(texts="A man is playing a guitar.\n\nSomeone plays an instrument.",
                                  api_name="/embed")
        assert embedded["texts"] == ["A man is playing a guitar.", "Someone plays an instrument."]
        assert np.array(embedded["vectors"]).shape == (2, 384)
        matrix = client.predict(texts_a="A man is playing a guitar.", texts_b="Someone plays an instrument.",
                                api_name="/similarity")["matrix"]
        assert len(matrix) == 1 and 0.5 < matrix[0][0] < 1
        found = client.predict(query="music", corpus="A man is playing a guitar.\nThe stock market fell.", k=1,
                               api_name="/search")
        assert [h["text"] for h in found["hits"]] == ["A man is playing a guitar."]
        near = client.predict(word="king", k=5, api_name="/neighbours")
        assert near["model"] == "SmolLM2-135M-Instruct" and len(near["neighbours"]) == 5
        assert any(n["token"].strip().lower() in ("queen", "kings", "prince") for n in near["neighbours"])
        solved = client.predict(a="king", b="man", c="woman", k=3, api_name="/analogy")
        assert solved["neighbours"][0]["token"].strip() == "queen"
        with pytest.raises(AppError, match="list is empty"):
            client.predict(texts="\n  \n", api_name="/embed")
        with pytest.raises(AppError, match="not a text-generation model"):
            client.predict(word="king", k=5, model="all-MiniLM-L6-v2", api_name="/neighbours")
