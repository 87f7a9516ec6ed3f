"""Attention maps: the engine's maps against softmax(Q K^T / sqrt(d) + mask) computed here by hand from the tiny
models' own projection weights (float64), the picked heads against their definition, and the limits."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Engine, InputTooLargeError, InvalidOptionsError, ModelSpec, Registry, Settings
from engine.tasks.attention import attention_spec, head_scores

TEXT = "The cat is small. I see the dog."


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm: Path, tiny_distilbert_sst2: Path, tiny_whisper: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = Registry()
    registry.add(ModelSpec("tiny-llama", "text-generation", "causal-lm", f"path:{tiny_causal_lm}", chat=True,
                           default=True))
    registry.add(ModelSpec("tiny-sst2", "sentiment", "sequence-classification", f"path:{tiny_distilbert_sst2}",
                           default=True))
    registry.add(ModelSpec("tiny-whisper", "speech-to-text", "whisper", f"path:{tiny_whisper}"))
    engine = Engine(Settings(cache_dir=tmp_path_factory.mktemp("cache"), offline=True, device="cpu",
                             dtype="float32"), registry)
    yield engine
    engine.close()


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(-1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(-1, keepdims=True)


def _rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def llama_by_hand(folder: Path, ids: list[int]) -> np.ndarray:
    """Every layer's attention (layers, heads, T, T) of the tiny Llama, from the layer inputs and the q/k weights:
    RoPE on q and k, the key heads shared by groups of query heads, a causal mask, all in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    config = model.config
    inputs = {}

    def keep(index):
        def hook(module, args, kwargs):
            inputs[index] = (kwargs["hidden_states"], kwargs["position_embeddings"])
        return hook

    handles = [layer.self_attn.register_forward_pre_hook(keep(i), with_kwargs=True)
               for i, layer in enumerate(model.model.layers)]
    with torch.inference_mode():
        model(input_ids=torch.tensor([ids]))
    for h in handles:
        h.remove()
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    d = config.hidden_size // heads
    t = len(ids)
    mask = np.triu(np.full((t, t), -np.inf), k=1)  # token i sees tokens j <= i
    maps = []
    for i, layer in enumerate(model.model.layers):
        hidden, (cos, sin) = inputs[i]
        x = hidden[0].double().numpy()  # (T, hidden)
        wq, wk = (p.weight.detach().double().numpy() for p in (layer.self_attn.q_proj, layer.self_attn.k_proj))
        q = (x @ wq.T).reshape(t, heads, d).transpose(1, 0, 2)  # (heads, T, d)
        k = (x @ wk.T).reshape(t, kv_heads, d).transpose(1, 0, 2)  # (kv_heads, T, d)
        c, s = cos[0].double().numpy(), sin[0].double().numpy()  # (T, d)
        q, k = q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s
        k = np.repeat(k, heads // kv_heads, axis=0)  # query head h reads key head h // (heads / kv_heads)
        maps.append(_softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask))
    return np.stack(maps)


def distilbert_by_hand(folder: Path, ids: list[int]) -> np.ndarray:
    """Every layer's attention of the tiny DistilBERT: its q_lin/k_lin (with biases) on each layer's input, no mask
    (one unpadded sentence: every token sees every token), float64."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states  # input of each layer
    heads = model.config.n_heads
    d = model.config.dim // heads
    t = len(ids)
    maps = []
    for i, layer in enumerate(model.transformer.layer):
        x = hidden[i][0].double().numpy()
        att = layer.attention
        q = x @ att.q_lin.weight.detach().double().numpy().T + att.q_lin.bias.detach().double().numpy()
        k = x @ att.k_lin.weight.detach().double().numpy().T + att.k_lin.bias.detach().double().numpy()
        q, k = (m.reshape(t, heads, d).transpose(1, 0, 2) for m in (q, k))
        maps.append(_softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d)))
    return np.stack(maps)


# float32 maps against float64: a softmax of dot products over d = 16 of unit-scale values; a few ulp of float32
TOLERANCE = 64 * np.finfo(np.float32).eps


def test_causal_maps_match_the_hand_computation(tiny: Engine, tiny_causal_lm: Path) -> None:
    maps = tiny.attention(TEXT, "tiny-llama")
    expected = llama_by_hand(tiny_causal_lm, list(maps.token_ids))
    assert maps.weights.shape == expected.shape == (2, 4, len(maps.tokens), len(maps.tokens))
    np.testing.assert_allclose(maps.weights.astype(np.float64), expected, rtol=0, atol=TOLERANCE)
    assert maps.causal and np.all(np.triu(maps.weights, k=1) == 0)  # nothing attends to the future
    np.testing.assert_allclose(maps.weights.sum(-1), 1, atol=TOLERANCE)
    assert "".join(maps.tokens).replace("Ġ", " ").strip().startswith("The cat")


def test_encoder_maps_match_the_hand_computation(tiny: Engine, tiny_distilbert_sst2: Path) -> None:
    maps = tiny.attention(TEXT, "tiny-sst2")
    expected = distilbert_by_hand(tiny_distilbert_sst2, list(maps.token_ids))
    np.testing.assert_allclose(maps.weights.astype(np.float64), expected, rtol=0, atol=TOLERANCE)
    assert not maps.causal and maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    assert np.triu(maps.weights, k=1).max() > 0  # an encoder reads both ways


def test_picked_heads_follow_their_definition(tiny: Engine) -> None:
    maps = tiny.attention(TEXT, "tiny-llama")
    w = maps.weights.astype(np.float64)
    t = w.shape[-1]
    previous = np.array([[np.mean([w[l, h, i, i - 1] for i in range(1, t)]) for h in range(w.shape[1])]
                         for l in range(w.shape[0])])
    first = np.array([[np.mean([w[l, h, i, 0] for i in range(1, t)]) for h in range(w.shape[1])]
                      for l in range(w.shape[0])])
    p, f = maps.previous_token_head, maps.first_token_head
    assert previous[p.layer, p.head] == pytest.approx(previous.max()) == pytest.approx(p.score)
    assert first[f.layer, f.head] == pytest.approx(first.max()) == pytest.approx(f.score)


def test_head_scores_on_a_known_pattern() -> None:
    t = 5
    previous = np.zeros((t, t))
    previous[0, 0] = 1
    previous[np.arange(1, t), np.arange(t - 1)] = 1  # each token looks only at the one before
    first = np.zeros((t, t))
    first[:, 0] = 1  # every token looks at the first
    prev_scores, first_scores = head_scores(np.stack([np.stack([previous, first])]))
    assert prev_scores.tolist() == [[1.0, 0.25]]  # the first-token head hits "previous" only at i = 1
    assert first_scores.tolist() == [[0.25, 1.0]]


def test_one_layer_and_the_limits(tiny: Engine) -> None:
    maps = tiny.attention(TEXT, "tiny-llama", layer=1)
    assert maps.layers == (1,) and maps.weights.shape[0] == 1 and maps.num_layers == 2
    assert maps.head(1, 3).shape == (len(maps.tokens),) * 2
    with pytest.raises(InvalidOptionsError, match="layers 0 to 1"):
        tiny.attention(TEXT, "tiny-llama", layer=5)
    with pytest.raises(InvalidOptionsError, match="whisper model"):
        tiny.attention(TEXT, "tiny-whisper")
    with pytest.raises(InputTooLargeError, match="at most 128 tokens"):
        tiny.attention("the cat " * 200, "tiny-llama")
    one = tiny.attention("cat", "tiny-llama")
    assert len(one.tokens) >= 1
    data = maps.to_dict()
    assert data["layers"] == [1] and len(data["weights"][0]) == 4


def test_the_eager_copy_is_a_model_of_its_own(tiny: Engine) -> None:
    tiny.attention(TEXT, "tiny-llama")
    loaded = {m.name: m for m in tiny.status().loaded}
    assert "tiny-llama · attention" in loaded and loaded["tiny-llama · attention"].family == "attention"
    assert tiny.generate("Hello", "tiny-llama", max_new_tokens=2, temperature=0).tokens  # generation unaffected
    copy = tiny.models.get(attention_spec(tiny.registry.get("tiny-llama"))).served
    assert copy.model.config._attn_implementation == "eager"
    assert copy.model is not tiny.served("text-generation", "tiny-llama").model  # generation keeps its own kernels
    assert tiny.unload("tiny-llama · attention")


def test_attention_endpoint_through_gradio_client(tiny: Engine) -> None:
    """``/attention`` as a script calls it: the tokens, the picked heads and the maps as nested lists."""
    import apps.attention
    from app_process import serving

    with serving(apps.attention.build(tiny)) as client:
        data = client.predict(text=TEXT, model="tiny-sst2", layer=0, api_name="/attention")
    assert data["model"] == "tiny-sst2" and data["tokens"][0] == "[CLS]" and data["layers"] == [0]
    weights = np.array(data["weights"])
    assert weights.shape == (1, 2, len(data["tokens"]), len(data["tokens"]))
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-3)  # rounded to 4 places
    assert {"layer", "head", "score"} == set(data["previous_token_head"])
