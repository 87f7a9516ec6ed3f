"""The tiny models load through the same classes as the real checkpoints, run, and tokenize like them."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models

TEXT = "Hello wörld, the cat isn't big! 42 € 日本 🙂"
GERMAN = "Die Katze ist klein."
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _digests(path: Path) -> dict[str, str]:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_causal_lm_is_a_chatml_llama(tiny_causal_lm: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm)
    assert tokenizer.decode(tokenizer(TEXT)["input_ids"]) == TEXT  # byte level: exact, even for unseen characters
    special = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token)
    assert special == ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tokenizer.model_max_length == 256
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # transformers 5: apply_chat_template returns a BatchEncoding unless return_dict=False.
    inputs = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tokenizer.convert_tokens_to_ids("<|im_start|>")

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    assert isinstance(model, LlamaForCausalLM) and model.config.max_position_embeddings == 256
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert output.shape == (1, inputs["input_ids"].shape[1] + 6) or output[0, -1] == tokenizer.eos_token_id
    assert isinstance(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True), str)


def test_gpt2_is_a_base_model_without_pad(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    assert tokenizer.chat_template is None and tokenizer.pad_token is None
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.decode(tokenizer(TEXT)["input_ids"]) == TEXT

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert isinstance(model, GPT2LMHeadModel)
    inputs = tokenizer("Once upon a time", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert output.shape[1] <= inputs["input_ids"].shape[1] + 5


def test_marian_translates_with_opus_mt_layout(tiny_marian: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianMTModel, MarianTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_marian)
    assert isinstance(tokenizer, MarianTokenizer)
    assert (tokenizer.source_lang, tokenizer.target_lang) == ("en", "de")
    vocab = tokenizer.get_vocab()
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    # The trained sentencepiece models are the ones in use: their pieces are what the tokenizer produces.
    sentence = "The garden was very green yesterday."
    assert tokenizer.tokenize(sentence) == tokenizer.spm_source.encode(sentence, out_type=str)
    assert tokenizer(text_target=GERMAN)["input_ids"][:-1] == [
        vocab[piece] for piece in tokenizer.spm_target.encode(GERMAN, out_type=str)
    ]
    ids = tokenizer(sentence)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == sentence

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_marian)
    assert isinstance(model, MarianMTModel)
    assert model.config.decoder_start_token_id == model.config.pad_token_id == vocab["<pad>"]
    assert model.config.vocab_size == len(vocab)
    assert (model.generation_config.num_beams, model.generation_config.max_length) == (4, 512)
    batch = tokenizer([sentence, "Hello, how are you?"], return_tensors="pt", padding=True)
    output = model.generate(**batch, max_new_tokens=8)
    assert output[0, 0].item() == vocab["<pad>"]
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_marian_other_direction_swaps_the_spm_models(tiny_marian: Path, tiny_marian_de_en: Path) -> None:
    assert (tiny_marian_de_en / "source.spm").read_bytes() == (tiny_marian / "target.spm").read_bytes()


def test_marian_rejects_languages_without_a_corpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="available languages: en, de"):
        tiny_models.build_marian(tmp_path, src="en", tgt="fr")


def test_m2m100_forces_the_target_language(tiny_m2m100: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_m2m100)
    tokenizer.src_lang = "en"
    batch = tokenizer("The cat is small.", return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tokenizer.get_lang_id("en")
    assert tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == "The cat is small."
    assert tokenizer.convert_ids_to_tokens(tokenizer.get_lang_id("de")) == "__de__"
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_m2m100)
    assert model.config.vocab_size == len(tokenizer)
    output = model.generate(**batch, forced_bos_token_id=tokenizer.get_lang_id("de"), num_beams=1, max_new_tokens=6)
    assert output[0, 1].item() == tokenizer.get_lang_id("de")


def test_distilbert_qa_is_cased_and_answers(tiny_distilbert_qa: Path) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert_qa)
    assert tokenizer.model_max_length == 512
    sentence = "Berlin is the capital of Germany."
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids, skip_special_tokens=True) == sentence
    vocab_txt = (tiny_distilbert_qa / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_txt[:3] == ["[PAD]", "[UNK]", "[CLS]"] and len(vocab_txt) == len(tokenizer)

    model = AutoModelForQuestionAnswering.from_pretrained(tiny_distilbert_qa)
    batch = tokenizer("What is the capital of Germany?", sentence, return_tensors="pt")
    with torch.inference_mode():
        output = model(**batch)
    assert output.start_logits.shape == output.end_logits.shape == batch["input_ids"].shape


def test_distilbert_sst2_is_uncased_with_labels(tiny_distilbert_sst2: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert_sst2)
    sentence = "I loved this movie, it was wonderful!"
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "i loved this movie, it was wonderful!"

    model = AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_sst2)
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    batch = tokenizer([sentence, "This film was terrible."], return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits = model(**batch).logits
    assert logits.shape == (2, 2)


def test_xlm_roberta_sentiment_has_three_labels(tiny_xlm_roberta_sentiment: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_xlm_roberta_sentiment)
    special = (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert special == (0, 1, 2, 3)  # fairseq's order, as in XLM-R
    ids = tokenizer(GERMAN)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == GERMAN
    model = AutoModelForSequenceClassification.from_pretrained(tiny_xlm_roberta_sentiment)
    assert list(model.config.id2label.values()) == ["negative", "neutral", "positive"]
    with torch.inference_mode():
        logits = model(**tokenizer(GERMAN, return_tensors="pt")).logits
    assert logits.shape == (1, 3)


@pytest.mark.parametrize("fixture", ["tiny_whisper", "tiny_whisper_en"])
def test_whisper_checkpoint_loads_and_decodes_silence(fixture: str, request: pytest.FixtureRequest) -> None:
    import whisper

    path: Path = request.getfixturevalue(fixture)
    model = whisper.load_model(str(path), device="cpu")
    assert model.is_multilingual == (fixture == "tiny_whisper")
    audio = whisper.pad_or_trim(np.zeros(16000 * 2, np.float32))
    mel = whisper.log_mel_spectrogram(audio)
    assert mel.shape == (80, 3000)
    # English-only models cannot detect the language: whisper.transcribe passes language="en" for them too.
    language = None if model.is_multilingual else "en"
    result = model.decode(mel, whisper.DecodingOptions(fp16=False, language=language, sample_len=8))
    assert isinstance(result.text, str) and len(result.tokens) <= 8
    assert result.language in whisper.tokenizer.LANGUAGES


@pytest.mark.parametrize(
    "build", [tiny_models.build_distilbert_classifier, tiny_models.build_roberta_classifier, tiny_models.build_whisper]
)
def test_builders_are_deterministic(build, tmp_path: Path) -> None:
    assert _digests(build(tmp_path / "a")) == _digests(build(tmp_path / "b"))


@pytest.mark.parametrize(
    ("fixture", "limit_mb"),
    [
        ("tiny_causal_lm", 2), ("tiny_gpt2", 2), ("tiny_marian", 2), ("tiny_m2m100", 2), ("tiny_distilbert_qa", 2),
        ("tiny_distilbert_sst2", 2), ("tiny_xlm_roberta_sentiment", 2),
        ("tiny_whisper", 8),  # the 51865 x 64 token embedding alone is 6.6 MB in float16
    ],
)
def test_tiny_models_stay_small(fixture: str, limit_mb: int, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    assert sum(f.stat().st_size for f in files) < limit_mb * 1024**2
