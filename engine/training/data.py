"""Text in, token windows out: the data side of pretraining, as nanoGPT's ``prepare.py`` and ``get_batch`` do it.

- A text comes from a bundled corpus (:data:`CORPORA`, files in ``assets/corpora/``), an uploaded file or a paste,
  and is checked once (:func:`check_corpus`): text, not binary, at least :data:`MIN_CHARS` characters, at most
  :data:`MAX_CHARS`.
- A tokenizer is made from the text (:func:`make_tokenizer`): ``"char"`` gives one token per distinct character
  (nanoGPT's shakespeare_char), ``"bpe"`` a byte-level BPE trained with the ``tokenizers`` library to a chosen
  vocabulary size (GPT-2's scheme). Either is saved as a ``tokenizer.json`` that
  ``transformers.AutoTokenizer.from_pretrained(folder)`` loads as a ``PreTrainedTokenizerFast``, so the generation
  runtime serves the trained model unchanged.
- The whole text becomes one token array on disk (:class:`TokenData`: uint16, or uint32 for vocabularies over 65,535,
  read through ``numpy.memmap``); the first 90% trains and the last 10% validates, as in nanoGPT.
  :meth:`TokenData.get_batch` draws ``batch_size`` random windows of ``block_size + 1`` tokens: inputs and the same
  shifted by one as targets.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError, UnknownModelError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets" / "corpora"
MIN_CHARS = 500  # below this there is nothing to learn and no validation split worth the name
MAX_CHARS = 20_000_000  # 20 M characters: minutes to tokenize on a small CPU, far more than a CPU run reads
VAL_FRACTION = 0.1  # the last 10% of the tokens validate (nanoGPT)
TOKENIZERS = ("char", "bpe")
MIN_VOCAB, MAX_VOCAB = 260, 50_304  # bpe: the 256 bytes and a few merges, up to GPT-2's size (padded)
TOKENS_FILE = "tokens.bin"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A bundled text: its file under ``assets/corpora/`` and what it is (provenance in ``assets/README.md``)."""

    name: str
    file: str
    description: str
    language: str

    @property
    def path(self) -> Path:
        return ASSETS / self.file


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("shakespeare", "shakespeare.txt", "Eight plays by Shakespeare (Hamlet, Macbeth, King Lear, Othello, Romeo "
           "and Juliet, Julius Caesar, The Tempest, Richard III): 1.1 M characters, as nanoGPT's tiny Shakespeare",
           "English"),
    Corpus("tang-poems", "tang-poems.txt", "7,418 Tang-dynasty poems of seven-character lines (全唐詩, traditional "
           "characters): 0.63 M characters, 5,171 distinct", "Chinese"),
)}


def corpus_text(name: str) -> str:
    """The text of a bundled corpus; an unknown name lists the corpora."""
    corpus = CORPORA.get(name)
    if corpus is None:
        raise UnknownModelError(name, list(CORPORA), what="corpus")
    return corpus.path.read_text(encoding="utf-8")


def check_corpus(text: Any) -> str:
    """The training text, or a message that says what is wrong with it (before any compute)."""
    if not isinstance(text, str):
        raise InvalidInputError(f"The training text must be text, not {type(text).__name__}.")
    if "\x00" in text:
        raise InvalidInputError("The training text contains binary data (NUL bytes): upload or paste plain UTF-8 "
                                "text (.txt).")
    if len(text) > MAX_CHARS:
        raise InputTooLargeError(f"The training text has {len(text):,} characters; the limit is {MAX_CHARS:,}. "
                                 "Use a part of it: a CPU run reads a few million characters at most.")
    if len(text.strip()) < MIN_CHARS:
        raise InvalidInputError(f"The training text has {len(text.strip()):,} characters; at least {MIN_CHARS:,} are "
                                "needed (the last 10% is kept apart for validation). Paste more text, or pick a "
                                "bundled corpus.")
    return text


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- tokenizers -----------------------------------------------------------------------------------------------------
def make_tokenizer(text: str, kind: str = "char", vocab_size: int = 1024) -> Any:
    """A ``transformers.PreTrainedTokenizerFast`` made from ``text``: one token per character (``"char"``), or a
    byte-level BPE of ``vocab_size`` tokens trained on it (``"bpe"``). No special tokens: every id is text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from ..loading import building

    with building():  # transformers' lazy import, one thread at a time (engine.loading)
        from transformers import PreTrainedTokenizerFast

    if kind == "char":
        chars = sorted(set(text))
        # BPE with no merges is a character lookup; characters not in the text are dropped when encoding
        tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_chunks(text), trainer=trainer, length=None)
    else:
        raise InvalidOptionsError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}.")
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)


def _chunks(text: str, size: int = 1 << 16):
    for i in range(0, len(text), size):
        yield text[i:i + size]


def encode(tokenizer: Any, text: str) -> np.ndarray:
    """All of ``text`` as token ids (int64): a table lookup for a character vocabulary (what the tokenizer does, 10x
    faster), else the tokenizer on pieces cut at line ends, in a batch."""
    vocab = tokenizer.get_vocab()
    if all(len(piece) == 1 for piece in vocab) and tokenizer.backend_tokenizer.decoder.__class__.__name__ == "Fuse":
        return np.fromiter((vocab[c] for c in text if c in vocab), dtype=np.int64)
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n", start + (1 << 16))
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    ids = tokenizer.backend_tokenizer.encode_batch(pieces, add_special_tokens=False)
    return np.fromiter((i for enc in ids for i in enc.ids), dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Preview:
    """How a tokenizer cuts the start of a text: ids and their pieces."""

    ids: tuple[int, ...]
    pieces: tuple[str, ...]
    vocab_size: int
    characters: int
    tokens: int  # in the previewed part


def preview(text: str, kind: str = "char", vocab_size: int = 1024, chars: int = 400,
            train_chars: int = 2_000_000) -> Preview:
    """The first ``chars`` characters tokenized by a tokenizer made from (up to ``train_chars`` of) the text."""
    text = check_corpus(text)
    tokenizer = make_tokenizer(text[:train_chars], kind, vocab_size)
    head = text[:chars]
    ids = tokenizer.encode(head, add_special_tokens=False)
    return Preview(tuple(ids), tuple(_piece(tokenizer, i) for i in ids), len(tokenizer), len(head), len(ids))


def _piece(tokenizer: Any, token_id: int) -> str:
    """A token as text; a byte-level token that is part of a character shows as its bytes, e.g. ``<e9 81>``."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    raw = bytes(_BYTE_OF[c] for c in tokenizer.convert_ids_to_tokens(token_id) if c in _BYTE_OF)
    return "<" + " ".join(f"{b:02x}" for b in raw) + ">"


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others for code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(extra)}}


_BYTE_OF = _byte_level_alphabet()


# --- the token array ------------------------------------------------------------------------------------------------
class TokenData:
    """The corpus as one memory-mapped token array: train = the first 90%, val = the last 10%."""

    def __init__(self, path: Path, vocab_size: int) -> None:
        self.path = Path(path)
        self.dtype = np.uint16 if vocab_size <= 65_535 else np.uint32
        self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        self.split_at = int(len(self.tokens) * (1 - VAL_FRACTION))

    @classmethod
    def write(cls, path: Path, ids: np.ndarray, vocab_size: int) -> "TokenData":
        dtype = np.uint16 if vocab_size <= 65_535 else np.uint32
        ids.astype(dtype).tofile(path)
        return cls(path, vocab_size)

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, name: str) -> np.ndarray:
        return self.tokens[:self.split_at] if name == "train" else self.tokens[self.split_at:]

    def check_block_size(self, block_size: int) -> None:
        """Both splits must hold at least one window of ``block_size + 1`` tokens."""
        shortest = min(self.split_at, len(self.tokens) - self.split_at)
        if block_size + 1 > shortest:
            raise InvalidOptionsError(
                f"block_size ({block_size}) is too large for this text: its validation split (the last 10%) has "
                f"{len(self.tokens) - self.split_at:,} tokens and the training split {self.split_at:,}; choose "
                f"block_size at most {max(1, shortest - 1)}, or use a longer text.")

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator,
                  device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows: inputs (B, T) and targets (B, T), the targets shifted by one token."""
        data = self.split(split)
        starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator).numpy()
        windows = np.stack([data[i:i + block_size + 1] for i in starts]).astype(np.int64)  # (B, T + 1)
        xy = torch.from_numpy(windows)
        x, y = xy[:, :-1], xy[:, 1:]
        if device.startswith("cuda"):
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)
