"""Tiny, randomly initialised models of every architecture the app serves, saved the way the hub ships them.

Each ``build_*`` writes a folder (for Whisper, a ``.pt`` file) that loads through exactly the code path of a real
checkpoint: ``AutoTokenizer.from_pretrained(folder)``, ``AutoModelFor....from_pretrained(folder)``,
``whisper.load_model(path)``. The tokenizers are really trained, on the small corpus below, so encoding and decoding
behave like the real ones; the weights are random (seeded), so outputs are deterministic nonsense. A builder takes
well under a second and writes a few MB.

Pass ``max_new_tokens`` when generating: the generation configs are the real ones (Marian: 4 beams, max_length 512)
and a random model rarely says end-of-sequence on its own.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SEED = 0

# ---------------------------------------------------------------------------------------------------------------------
# Corpus: parallel English/German sentences from templates, plus English-only sentences for chat, QA and sentiment.

# (English, German nominative, German accusative)
_NOUNS = (
    ("cat", "die Katze", "die Katze"), ("dog", "der Hund", "den Hund"), ("house", "das Haus", "das Haus"),
    ("car", "das Auto", "das Auto"), ("book", "das Buch", "das Buch"), ("tree", "der Baum", "den Baum"),
    ("city", "die Stadt", "die Stadt"), ("garden", "der Garten", "den Garten"), ("table", "der Tisch", "den Tisch"),
    ("window", "das Fenster", "das Fenster"), ("school", "die Schule", "die Schule"),
    ("river", "der Fluss", "den Fluss"), ("bird", "der Vogel", "den Vogel"), ("child", "das Kind", "das Kind"),
    ("teacher", "der Lehrer", "den Lehrer"), ("friend", "der Freund", "den Freund"), ("door", "die Tür", "die Tür"),
    ("apple", "der Apfel", "den Apfel"), ("computer", "der Computer", "den Computer"),
    ("flower", "die Blume", "die Blume"),
)
_ADJECTIVES = (
    ("big", "groß"), ("small", "klein"), ("old", "alt"), ("new", "neu"), ("beautiful", "schön"),
    ("fast", "schnell"), ("quiet", "ruhig"), ("green", "grün"), ("happy", "glücklich"), ("warm", "warm"),
    ("cold", "kalt"), ("good", "gut"),
)
_ADJECTIVE_TEMPLATES = (
    ("The {n} is {a}.", "{nom} ist {a}."),
    ("The {n} was very {a} yesterday.", "{nom} war gestern sehr {a}."),
    ("Is the {n} {a}?", "Ist {nom} {a}?"),
    ("I think the {n} is not {a}.", "Ich glaube, {nom} ist nicht {a}."),
)
_OBJECT_TEMPLATES = (
    ("I see the {n}.", "Ich sehe {acc}."),
    ("We like the {n} very much.", "Wir mögen {acc} sehr."),
    ("Do you have the {n}?", "Hast du {acc}?"),
    ("She bought the {n} today.", "Sie hat heute {acc} gekauft."),
)
_PHRASES = (
    ("Hello, how are you?", "Hallo, wie geht es dir?"), ("Thank you very much.", "Vielen Dank."),
    ("Good morning!", "Guten Morgen!"), ("My name is Anna.", "Ich heiße Anna."),
    ("The weather is nice today.", "Das Wetter ist heute schön."),
    ("I am a small frog.", "Ich bin ein kleiner Frosch."),
    ("Where is the train station?", "Wo ist der Bahnhof?"), ("It costs 12 euros.", "Es kostet 12 Euro."),
    ("Tom asked his teacher for advice.", "Tom bat seinen Lehrer um Rat."),
    ("We are going home now.", "Wir gehen jetzt nach Hause."), ("I don't know.", "Ich weiß es nicht."),
    ("The meeting starts at 9 o'clock.", "Das Treffen beginnt um 9 Uhr."),
)
_ENGLISH_ONLY = (
    "Hello! How can I help you today?", "You are a helpful assistant.", "Please answer the question briefly.",
    "What is the capital of France? The capital of France is Paris.",
    "Berlin is the capital of Germany and has about 3.7 million inhabitants.",
    "The Amazon is the largest rainforest on Earth.", "Water boils at 100 degrees Celsius.",
    "Alan Turing was born in London in 1912.", "The Eiffel Tower was completed in 1889.",
    "I loved this movie, it was wonderful!", "This film was terrible and boring.",
    "The food was great and the staff were friendly.", "What a waste of time, I hated it.",
    "It's okay, nothing special.", "Absolutely fantastic performance by the whole cast.",
    "Summarize the following text in one sentence.", "Translate English to German: the house is small.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024.", "Email me at anna@example.com or call +1 (555) 010-9999.",
    "Don't worry; it's fine -- really.", "Who wrote Hamlet? William Shakespeare wrote Hamlet.",
    "How many legs does a spider have? A spider has eight legs.",
    "The quick brown fox jumps over the lazy dog.", "Once upon a time, there was a little girl named Lily.",
    "She liked to play outside in the sun with her friends.", "def add(a, b):\n    return a + b",
)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def parallel_corpus() -> list[tuple[str, str]]:
    """(English, German) sentence pairs, about a thousand, always in the same order."""
    pairs = [
        (en.format(n=n, a=a), _capitalise(de.format(nom=nom, a=a_de)))
        for en, de in _ADJECTIVE_TEMPLATES for n, nom, _ in _NOUNS for a, a_de in _ADJECTIVES
    ]
    pairs += [(en.format(n=n), de.format(acc=acc)) for en, de in _OBJECT_TEMPLATES for n, _, acc in _NOUNS]
    return pairs + list(_PHRASES)


def corpus(language: str) -> list[str]:
    """Training sentences for ``language`` ("en" or "de")."""
    pairs = parallel_corpus()
    if language == "en":
        return [en for en, _ in pairs] + list(_ENGLISH_ONLY)
    if language == "de":
        return [de for _, de in pairs]
    raise ValueError(f"No corpus for language {language!r}; available: 'en', 'de'.")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizers


def _train_byte_level_bpe(special_tokens: Sequence[str], vocab_size: int = 640) -> tuple[dict[str, int], list]:
    """Byte-level BPE as GPT-2 and SmolLM2 have it; returns (vocab, merges) with the special tokens first."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus("en"), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def _byte_level_bpe_tokenizer(special_tokens: Sequence[str], **kwargs):
    from transformers import GPT2Tokenizer

    vocab, merges = _train_byte_level_bpe(special_tokens)
    # GPT2Tokenizer is the class SmolLM2 and GPT-2 name in their tokenizer_config.json.
    return GPT2Tokenizer(vocab=vocab, merges=merges, **kwargs)


def _train_wordpiece(lowercase: bool, vocab_size: int = 800) -> dict[str, int]:
    """A BERT WordPiece vocabulary: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then the pieces."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)  # as DistilBertTokenizer sets it up
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    sentences = corpus("en")
    normalized = (tokenizer.normalizer.normalize_str(sentence) for sentence in sentences)
    words = (word for text in normalized for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text))
    characters = sorted({character for word in words for character in word})
    # The trainer numbers the "##x" alphabet in hash-map order and breaks ties between equally frequent merges by
    # those numbers, so the vocabulary changes from run to run. Seeding the alphabet, in sorted order, fixes it.
    alphabet = characters + [f"##{character}" for character in characters]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *alphabet],
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer)
    return tokenizer.get_vocab()


def _wordpiece_tokenizer(lowercase: bool):
    from transformers import DistilBertTokenizerFast

    return DistilBertTokenizerFast(vocab=_train_wordpiece(lowercase), do_lower_case=lowercase, model_max_length=512)


def _train_sentencepiece(sentences: Iterable[str], path: Path, vocab_size: int, model_type: str = "unigram") -> Path:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    return path


def _sentencepiece_pieces(path: Path) -> list[tuple[str, float]]:
    """(piece, score) of a trained model's normal pieces, in id order (no <unk>, <s>, </s>)."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return [
        (processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())
        if not (processor.is_control(i) or processor.is_unknown(i))
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Builders


def _seeded(model_class, config, seed: int):
    torch.manual_seed(seed)
    return model_class(config).eval()


def _save(folder: Path, model, tokenizer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)  # transformers 5 always writes model.safetensors (no safe_serialization argument)
    tokenizer.save_pretrained(folder)
    logger.debug("Saved a tiny %s to %s", type(model).__name__, folder)
    return folder


def _write_vocab_txt(folder: Path, tokenizer) -> None:
    """BERT repos ship vocab.txt next to tokenizer.json; transformers 5 only writes the latter."""
    tokens = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in tokens), encoding="utf-8")


# SmolLM2-Instruct's template, with a shorter default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_causal_lm(folder: Path, seed: int = SEED) -> Path:
    """A Llama chat model laid out like SmolLM2-Instruct: ChatML template, ``<|im_end|>`` as eos and pad."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_level_bpe_tokenizer(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
        model_max_length=256,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, **ids,
    )
    model = _seeded(LlamaForCausalLM, config, seed)
    model.generation_config = GenerationConfig(**ids)
    return _save(folder, model, tokenizer)


def build_gpt2(folder: Path, seed: int = SEED) -> Path:
    """A GPT-2 base model: ``<|endoftext|>`` is bos, eos and unk; like the real one it has no pad token."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    tokenizer = _byte_level_bpe_tokenizer(
        ("<|endoftext|>",), bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token=None, model_max_length=256,
    )
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=4, bos_token_id=eos, eos_token_id=eos,
    )
    model = _seeded(GPT2LMHeadModel, config, seed)
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos)
    return _save(folder, model, tokenizer)


MARIAN_LANGUAGES = ("en", "de")


def build_marian(folder: Path, src: str = "en", tgt: str = "de", seed: int = SEED) -> Path:
    """A Marian translation model laid out like Helsinki-NLP/opus-mt-{src}-{tgt}.

    As in opus-mt: one ``vocab.json`` shared by both sides with ``</s>`` = 0, ``<unk>`` = 1 and ``<pad>`` last;
    ``<pad>`` is also the decoder start token; ``source.spm``/``target.spm`` are per-language sentencepiece models.
    """
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    for language in (src, tgt):
        if language not in MARIAN_LANGUAGES:
            raise ValueError(f"No tiny Marian for {language!r}; available languages: {', '.join(MARIAN_LANGUAGES)}.")
    with tempfile.TemporaryDirectory() as scratch:
        source_spm = _train_sentencepiece(corpus(src), Path(scratch, "source.spm"), vocab_size=400)
        target_spm = _train_sentencepiece(corpus(tgt), Path(scratch, "target.spm"), vocab_size=400)
        vocab = {"</s>": 0, "<unk>": 1}
        for piece, _ in _sentencepiece_pieces(source_spm) + _sentencepiece_pieces(target_spm):
            vocab.setdefault(piece, len(vocab))
        vocab["<pad>"] = len(vocab)
        vocab_file = Path(scratch, "vocab.json")
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
        tokenizer = MarianTokenizer(
            source_spm=str(source_spm), target_spm=str(target_spm), vocab=str(vocab_file),
            source_lang=src, target_lang=tgt, model_max_length=512,
        )
        pad, eos = vocab["<pad>"], vocab["</s>"]
        config = MarianConfig(
            vocab_size=len(vocab), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512,
            pad_token_id=pad, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=pad, forced_eos_token_id=eos,
            scale_embedding=True, share_encoder_decoder_embeddings=True,
        )
        model = _seeded(MarianMTModel, config, seed)
        # opus-mt's generation_config.json
        model.generation_config = GenerationConfig(
            bad_words_ids=[[pad]], bos_token_id=eos, decoder_start_token_id=pad, eos_token_id=eos,
            forced_eos_token_id=eos, max_length=512, num_beams=4, pad_token_id=pad, renormalize_logits=True,
        )
        return _save(folder, model, tokenizer)


def build_m2m100(folder: Path, seed: int = SEED) -> Path:
    """An M2M100 many-to-many translation model laid out like facebook/m2m100_418M.

    Set ``tokenizer.src_lang`` and pass ``forced_bos_token_id=tokenizer.get_lang_id(tgt)`` to ``generate``; the
    100 language tokens come from the tokenizer, after the ``vocab.json`` entries (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
    ``<unk>`` 3, then the sentencepiece pieces).
    """
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer
    from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

    with tempfile.TemporaryDirectory() as scratch:
        spm = _train_sentencepiece(
            corpus("en") + corpus("de"), Path(scratch, "sentencepiece.bpe.model"), vocab_size=600, model_type="bpe",
        )
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for piece, _ in _sentencepiece_pieces(spm):
            vocab.setdefault(piece, len(vocab))
        vocab_file = Path(scratch, "vocab.json")
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
        # The real tokenizer_config.json lists the language tokens; transformers 5.24's constructor alone never marks
        # them special (a chained `not in` in M2M100Tokenizer.__init__), and then decode keeps "__de__".
        language_tokens = [f"__{code}__" for code in FAIRSEQ_LANGUAGE_CODES["m2m100"]]
        tokenizer = M2M100Tokenizer(
            vocab_file=str(vocab_file), spm_file=str(spm), model_max_length=1024,
            additional_special_tokens=language_tokens,
        )
        ids = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
        config = M2M100Config(
            vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=1024,
            scale_embedding=True, **ids,
        )
        model = _seeded(M2M100ForConditionalGeneration, config, seed)
        model.generation_config = GenerationConfig(early_stopping=True, max_length=200, num_beams=5, **ids)
        return _save(folder, model, tokenizer)


def _distilbert_config(tokenizer, **kwargs):
    from transformers import DistilBertConfig

    return DistilBertConfig(
        vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, **kwargs,
    )


def build_distilbert_qa(folder: Path, seed: int = SEED) -> Path:
    """Extractive QA laid out like distilbert-base-cased-distilled-squad (cased WordPiece)."""
    from transformers import DistilBertForQuestionAnswering

    tokenizer = _wordpiece_tokenizer(lowercase=False)
    model = _seeded(DistilBertForQuestionAnswering, _distilbert_config(tokenizer), seed)
    _write_vocab_txt(_save(folder, model, tokenizer), tokenizer)
    return folder


def _labels(labels: Sequence[str]) -> dict:
    return dict(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})


def build_distilbert_classifier(
    folder: Path, labels: Sequence[str] = ("NEGATIVE", "POSITIVE"), seed: int = SEED
) -> Path:
    """Text classification laid out like distilbert-base-uncased-finetuned-sst-2-english (uncased WordPiece)."""
    from transformers import DistilBertForSequenceClassification

    tokenizer = _wordpiece_tokenizer(lowercase=True)
    config = _distilbert_config(tokenizer, finetuning_task="sst-2", **_labels(labels))
    model = _seeded(DistilBertForSequenceClassification, config, seed)
    _write_vocab_txt(_save(folder, model, tokenizer), tokenizer)
    return folder


def build_roberta_classifier(
    folder: Path, labels: Sequence[str] = ("negative", "neutral", "positive"), seed: int = SEED
) -> Path:
    """Three-class sentiment laid out like cardiffnlp/twitter-xlm-roberta-base-sentiment (XLM-R, unigram pieces)."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizer

    # XLM-R's fairseq order around its sentencepiece pieces: <s> 0, <pad> 1, </s> 2, <unk> 3, ..., <mask> last.
    # (sentencepiece, not the tokenizers Unigram trainer: that one's scores change in the last digits between runs.)
    with tempfile.TemporaryDirectory() as scratch:
        spm = _train_sentencepiece(corpus("en") + corpus("de"), Path(scratch, "sentencepiece.bpe.model"), 600)
        pieces = _sentencepiece_pieces(spm)
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab = specials + pieces + [("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab, model_max_length=512)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=514, type_vocab_size=1, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        **_labels(labels),
    )
    model = _seeded(XLMRobertaForSequenceClassification, config, seed)
    return _save(folder, model, tokenizer)


WHISPER_VOCAB = {True: 51865, False: 51864}  # multilingual, English-only (the sizes before large-v3)


def build_whisper(folder: Path, multilingual: bool = True, seed: int = SEED) -> Path:
    """An openai-whisper checkpoint (``.pt``) with tiny random weights; returns the file, for ``whisper.load_model``.

    The weights are stored in float16, as OpenAI's checkpoints are; ``load_model`` casts them into a float32 model.
    """
    import whisper
    from whisper.model import ModelDimensions

    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
        n_vocab=WHISPER_VOCAB[multilingual], n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )
    torch.manual_seed(seed)
    model = whisper.model.Whisper(dims)
    # Whisper leaves the decoder's learned positions uninitialised (torch.empty): whatever was in memory, NaN included.
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.01)
    state = {name: tensor.half() for name, tensor in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("tiny-random.pt" if multilingual else "tiny-random.en.pt")
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": state}, path)
    return path
