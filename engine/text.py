"""Text utilities for translation: sentence splitting, paragraph-preserving segmentation, language guessing.

The splitter is rule based and errs on the side of *not* splitting: a missed boundary only hands the translator a
longer unit, while a false one cuts a sentence in two and ruins both halves.

Line breaks are always boundaries (poems, lists, addresses and chat logs keep their lines); a blank line separates
paragraphs. :func:`segment` records every separator so that :meth:`Document.rebuild` can put translated sentences back
into the original layout.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import InvalidInputError

logger = logging.getLogger(__name__)

# --- language codes ------------------------------------------------------------------------------------------------

# ISO 639-3 / FLORES-200 / English names -> the ISO 639-1 code used everywhere else in the engine.
_LANGUAGE_ALIASES: dict[str, str] = {
    "zho": "zh", "cmn": "zh", "chi": "zh", "chinese": "zh", "mandarin": "zh",
    "jpn": "ja", "japanese": "ja",
    "kor": "ko", "korean": "ko",
    "eng": "en", "english": "en",
    "deu": "de", "ger": "de", "german": "de",
    "fra": "fr", "fre": "fr", "french": "fr",
    "spa": "es", "spanish": "es",
    "ita": "it", "italian": "it",
    "por": "pt", "portuguese": "pt",
    "nld": "nl", "dut": "nl", "dutch": "nl",
    "rus": "ru", "russian": "ru",
    "ara": "ar", "arb": "ar", "arabic": "ar",
    "ell": "el", "gre": "el", "greek": "el",
    "hin": "hi", "hindi": "hi",
    "tha": "th", "thai": "th",
    "heb": "he", "hebrew": "he",
    "cantonese": "yue",
}

# Languages written without spaces between sentences (and words).
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "yue", "wuu", "lzh"})


def base_language(code: str) -> str:
    """Reduce a language code or name to its lower-case base code.

    ``"zh-CN"``, ``"zh_Hant"``, ``"zho_Hans"`` and ``"Chinese"`` all give ``"zh"``; ``"jpn_Jpan"`` gives ``"ja"``.
    Unknown codes come back lower-cased without their region or script part.
    """
    head = re.split(r"[-_\s]", code.strip().lower(), maxsplit=1)[0]
    return _LANGUAGE_ALIASES.get(head, head)


# --- sentence splitting --------------------------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|[\n\r\u2028\u2029\x85]")
# A run of sentence-ending marks; "?!", "..." and "。」" are handled as one stop.
_TERMINATORS = re.compile(r"[.!?…‼⁇⁈⁉。！？｡؟।॥]+")
_CJK_STOPS = frozenset("。！？｡")
_CLOSERS = frozenset("\"')]}»›”’」』）】〉》〕］｝〗〙〛")
_OPENERS = frozenset("\"'([{«‹“‘「『（【〈《〔［｛〖〘〚¿¡")
# After whitespace, these cannot start a sentence, so the stop before them was not an ending.
_NON_STARTERS = frozenset(",;:%)]}")

# Abbreviations after which a period never ends the sentence (titles and Latin phrases; matched lower-cased).
_ABBREVIATIONS = frozenset("""
    mr mrs ms mx dr prof st mt sr sra srta mme mlle hr fr hrn gen col lt sgt capt cmdr adm rev hon gov sen rep pres
    e.g i.e cf vs viz al approx ca z.b bzw d.h u.a o.ä
""".split())
# Abbreviations that are abbreviations only before a number ("No. 5", "p. 12", "Jan. 3"); "No. That's wrong." splits.
_NUMERIC_ABBREVIATIONS = frozenset("""
    no nos nr p pp vol vols fig figs art sec ch chap eq ed op
    jan feb mar apr jun jul aug sep sept oct nov dec
""".split())
# German writes ordinals as "3. Oktober"; a month after a small number means the period was not an ending.
_MONTHS = frozenset("""
    january february march april may june july august september october november december
    januar februar märz april mai juni juli august september oktober november dezember
""".split())
_DOTTED_INITIALS = re.compile(r"(?:[A-Z]\.)+[A-Z]")  # "U.S", "U.K", "U.S.A" (before the final period)


def _is_cjk(char: str) -> bool:
    if not char:
        return False
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF66 <= code <= 0xFF9F  # half-width Katakana
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0x20000 <= code <= 0x2FA1F
    )


def _word_before(line: str, stop: int) -> tuple[str, bool]:
    """The token that ends at ``stop`` (without leading openers) and whether it is the line's first token."""
    start = stop
    while start > 0 and not line[start - 1].isspace():
        start -= 1
    first = not line[:start].strip()
    token = line[start:stop]
    while token and token[0] in _OPENERS:
        token = token[1:]
    return token, first


def _period_ends_sentence(line: str, stop: int, next_pos: int) -> bool:
    """Decide whether a single '.' at ``stop`` that is followed by whitespace ends a sentence."""
    token, first_on_line = _word_before(line, stop)
    lowered = token.lower()
    following = line[next_pos:]
    next_word = re.match(r"[^\W\d_]+", following)
    if lowered in _ABBREVIATIONS:
        return False
    if lowered in _NUMERIC_ABBREVIATIONS and following[:1].isdigit():
        return False
    if len(token) == 1 and token.isupper() and token != "I":  # an initial: "John F. Kennedy"
        return False
    if _DOTTED_INITIALS.fullmatch(token):  # "the U.S. Army"
        return False
    if token.isdigit() and len(token) <= 2:
        if first_on_line:  # "1. Introduction"
            return False
        if next_word and next_word.group(0).lower() in _MONTHS:  # "am 3. Oktober"
            return False
    return True


def _sentence_spans(line: str) -> list[tuple[int, int]]:
    """Spans (start, end) of the sentences in one line, without surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _TERMINATORS.finditer(line):
        run_start, end = match.span()
        while end < len(line) and line[end] in _CLOSERS:
            end += 1
        absorbed_closer = end > match.end()
        run = match.group(0)
        nxt = line[end] if end < len(line) else ""
        if not nxt:
            break  # the line's last piece is added below
        if _CJK_STOPS.intersection(run):
            # 「はい。」と言った: a quote closed after the stop and continued by text is one sentence.
            if absorbed_closer and not nxt.isspace() and nxt not in _OPENERS:
                continue
        elif not nxt.isspace():
            # Half-width ! and ? between CJK characters end a sentence without a following space; "3.14",
            # "example.com" and "e.g.," do not.
            prev = line[run_start - 1] if run_start else ""
            if not (set(run) <= set("!?") and _is_cjk(prev) and _is_cjk(nxt)):
                continue
        else:
            next_pos = end
            while next_pos < len(line) and line[next_pos].isspace():
                next_pos += 1
            if next_pos == len(line):
                break
            first = line[next_pos]
            if first.islower() or first in _NON_STARTERS:  # '"Why?" he asked.'
                continue
            if run == "." and not _period_ends_sentence(line, run_start, next_pos):
                continue
        spans.append((start, end))
        start = end
        while start < len(line) and line[start].isspace():
            start += 1
    if line[start:].strip():
        spans.append((start, len(line.rstrip())))
    return [(s, e) for s, e in spans if line[s:e].strip()]


def _split_line(line: str) -> list[tuple[int, int]]:
    """Sentence spans of a line with leading whitespace skipped (spans index into ``line``)."""
    offset = len(line) - len(line.lstrip())
    return [(s + offset, e + offset) for s, e in _sentence_spans(line[offset:])]


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; line breaks always end a sentence.

    Handles Latin stops (``. ! ? …``) with abbreviations ("Dr.", "e.g.", "U.S."), initials, decimals, ellipses and
    quotes or brackets that close after the stop; CJK stops (``。！？｡``) in unspaced Chinese and Japanese text, and
    half-width ``!``/``?`` between CJK characters. Nothing but whitespace is lost: the pieces appear in ``text`` in
    order, separated only by whitespace.
    """
    sentences: list[str] = []
    for line in _LINE_BREAK.split(text):
        sentences.extend(line[s:e] for s, e in _split_line(line))
    return sentences


# --- paragraphs and documents --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One non-blank line: its indentation, sentences, the gaps between them and what follows the last one."""

    indent: str
    sentences: tuple[str, ...]
    gaps: tuple[str, ...]  # len(sentences) - 1 whitespace strings ("" in unspaced CJK text)
    end: str  # trailing whitespace plus the line break ("" on the text's last line)


@dataclass(frozen=True)
class Paragraph:
    """Consecutive non-blank lines, and the blank lines (with their breaks) that follow them."""

    lines: tuple[Line, ...]
    after: str

    @property
    def sentences(self) -> tuple[str, ...]:
        return tuple(s for line in self.lines for s in line.sentences)


@dataclass(frozen=True)
class Document:
    """Text cut into paragraphs, lines and sentences, keeping every separator so it can be put back together."""

    leading: str  # blank lines before the first paragraph
    paragraphs: tuple[Paragraph, ...]

    @property
    def sentences(self) -> tuple[str, ...]:
        """Every sentence in reading order: what to translate."""
        return tuple(s for p in self.paragraphs for s in p.sentences)

    def rebuild(self, translated: Sequence[str], target_lang: str | None = None) -> str:
        """Put ``translated`` (one per :attr:`sentences`, same order) back into the original layout.

        Paragraph breaks, line breaks and indentation are kept as they were. Sentences on the same line are joined
        with one space, or with nothing when ``target_lang`` is written without spaces (Chinese, Japanese); with
        ``target_lang=None`` the original gaps are kept, so ``doc.rebuild(doc.sentences)`` gives back the input.
        """
        expected = len(self.sentences)
        if len(translated) != expected:
            raise InvalidInputError(
                f"Got {len(translated)} translated sentences for a text of {expected}: give exactly one translation "
                "per sentence, in order."
            )
        joiner = None
        if target_lang is not None:
            joiner = "" if base_language(target_lang) in NO_SPACE_LANGUAGES else " "
        pieces = iter(translated)
        out = [self.leading]
        for paragraph in self.paragraphs:
            for line in paragraph.lines:
                out.append(line.indent)
                gaps = ("",) + (line.gaps if joiner is None else (joiner,) * len(line.gaps))
                written = ""
                for gap, _ in zip(gaps, line.sentences, strict=True):
                    part = next(pieces).strip()
                    if part:  # an empty translation leaves no double gap behind
                        written += (gap if written else "") + part
                out.append(written)
                out.append(line.end)
            out.append(paragraph.after)
        return "".join(out)


def _lines_with_breaks(text: str) -> list[tuple[str, str]]:
    """``text`` as (content, line break) pairs; the last break is "" when the text does not end with one."""
    result: list[tuple[str, str]] = []
    pos = 0
    for match in _LINE_BREAK.finditer(text):
        result.append((text[pos:match.start()], match.group(0)))
        pos = match.end()
    result.append((text[pos:], ""))
    return result


def _make_line(content: str, line_break: str) -> Line:
    spans = _split_line(content)
    indent = content[: spans[0][0]]
    sentences = tuple(content[s:e] for s, e in spans)
    gaps = tuple(content[spans[i][1]:spans[i + 1][0]] for i in range(len(spans) - 1))
    return Line(indent=indent, sentences=sentences, gaps=gaps, end=content[spans[-1][1]:] + line_break)


def segment(text: str) -> Document:
    """Cut ``text`` into a :class:`Document` of paragraphs (separated by blank lines), lines and sentences."""
    leading: list[str] = []
    paragraphs: list[Paragraph] = []
    lines: list[Line] = []
    after: list[str] = []
    for content, line_break in _lines_with_breaks(text):
        if not content.strip():
            (after if lines else leading).append(content + line_break)
            continue
        if after:  # a blank line closed the paragraph being collected
            paragraphs.append(Paragraph(tuple(lines), "".join(after)))
            lines, after = [], []
        lines.append(_make_line(content, line_break))
    if lines:
        paragraphs.append(Paragraph(tuple(lines), "".join(after)))
    return Document(leading="".join(leading), paragraphs=tuple(paragraphs))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of ``text`` (separated by one or more blank lines), each without surrounding blank lines."""
    paragraphs: list[str] = []
    current: list[str] = []
    for content, line_break in _lines_with_breaks(text):
        if content.strip():
            current.append(content + line_break)
        elif current:
            paragraphs.append("".join(current).rstrip("\r\n\u2028\u2029\x85"))
            current = []
    if current:
        paragraphs.append("".join(current).rstrip("\r\n\u2028\u2029\x85"))
    return paragraphs


# --- language guessing ---------------------------------------------------------------------------------------------

# (first, last, script) code point ranges, checked in order.
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"),
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0x08A0, 0x08FF, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x1100, 0x11FF, "Hangul"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3040, 0x30FF, "Kana"), (0x31F0, 0x31FF, "Kana"), (0xFF66, 0xFF9F, "Kana"),
    (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"), (0x20000, 0x2FA1F, "Han"),
)
_SCRIPT_LANGUAGE = {
    "Greek": "el", "Cyrillic": "ru", "Hebrew": "he", "Arabic": "ar", "Devanagari": "hi", "Thai": "th",
    "Hangul": "ko", "Kana": "ja", "Han": "zh",
}
# A Han character, kana or Hangul block carries about as much as a short word, not a letter: weigh it like one.
_SYLLABIC_WEIGHT = 3.0
_SAMPLE_CHARS = 4000
# Japanese text is a mix of Han and kana; Chinese has (almost) no kana.
_JA_MIN_KANA_SHARE = 0.1

_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the of and to a in is it that was for on are with as be this by not at from have or but an they "
                    "you he she we his her which were been has had will would their there what when can i".split()),
    "de": frozenset("der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es an als wird "
                    "sie ich er wir aber bei oder noch nach wie einen hat sind war nur über".split()),
    "fr": frozenset("le la les et est un une des du de pas que qui dans pour en sur au il elle ne se ce avec sont "
                    "mais nous vous ils par plus être cette aux était je".split()),
    "es": frozenset("el la los las y es un una de que en no por con para del se lo al como más pero sus le ya o "
                    "este está son fue ha muy también yo".split()),
    "it": frozenset("il la le lo gli e è un una di che in non per con del della dei sono si da al anche come più "
                    "ma questo ha nel alla io".split()),
    "pt": frozenset("o a os as e é um uma de que em não por com para do da dos das se no na ao como mais mas foi "
                    "são também eu ele ela está estão muito isso pelo pela nos".split()),
    "nl": frozenset("de het een en is van in niet dat op te zijn met voor die er maar ook als aan bij om ik je "
                    "we ze was naar dan wat heeft worden wordt".split()),
}
# Letters that (among the languages above) point to one language.
_LETTER_HINTS = {"ñ": "es", "ß": "de", "ä": "de", "ö": "de", "ü": "de", "ã": "pt", "õ": "pt", "œ": "fr", "ê": "fr"}
# A word in k lists counts 1/k for each: "de" is Dutch, Spanish, French, Portuguese and Italian at once.
_STOPWORD_OWNERS: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang, words in _STOPWORDS.items() if word in words)
    for word in set().union(*_STOPWORDS.values())
}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class LanguageGuess:
    """A guessed language: its code, a confidence in [0, 1], the script seen and the ranked alternatives."""

    code: str
    confidence: float
    script: str
    candidates: tuple[tuple[str, float], ...]  # (code, share of the evidence), best first


def _script_of(char: str) -> str | None:
    code = ord(char)
    for first, last, script in _SCRIPT_RANGES:
        if first <= code <= last:
            return script if script != "Latin" or char.isalpha() else None
    return None


def _guess_latin(text: str) -> list[tuple[str, float]]:
    """Rank the Latin-script languages by stopwords (each weighed by how few languages share it) and letter hints."""
    scores = dict.fromkeys(_STOPWORDS, 0.0)
    for word in _WORD.findall(text.lower()):
        owners = _STOPWORD_OWNERS.get(word, ())
        for lang in owners:
            scores[lang] += 1.0 / len(owners)
    for char in text.lower():
        if char in _LETTER_HINTS:
            scores[_LETTER_HINTS[char]] += 0.5
    total = sum(scores.values())
    if total == 0:
        return []
    return sorted(((lang, score / total) for lang, score in scores.items() if score), key=lambda x: -x[1])


def detect_script_language(text: str) -> LanguageGuess | None:
    """Guess the language of ``text`` from its script, and for Latin script from common words.

    Scripts used by one major language map to it (Han → zh, kana → ja, Hangul → ko, Cyrillic → ru, Arabic → ar,
    Greek → el, Devanagari → hi, Thai → th, Hebrew → he); Latin text is told apart among en, de, fr, es, it, pt and
    nl by stopword frequency. Returns ``None`` when there are no letters or, for Latin text, no known words. The
    confidence is the dominant script's share of the letters times the winning language's share of the evidence.
    """
    sample = unicodedata.normalize("NFC", text[:_SAMPLE_CHARS])
    counts: dict[str, float] = {}
    for char in sample:
        script = _script_of(char)
        if script is not None:
            weight = 1.0 if script in ("Latin", "Greek", "Cyrillic", "Hebrew", "Arabic", "Devanagari", "Thai") \
                else _SYLLABIC_WEIGHT
            counts[script] = counts.get(script, 0.0) + weight
    if not counts:
        return None
    # Kana always comes with Han in Japanese: count them together as Japanese when there is enough kana.
    han, kana = counts.get("Han", 0.0), counts.get("Kana", 0.0)
    if kana and kana / (han + kana) >= _JA_MIN_KANA_SHARE:
        counts["Kana"] = han + kana
        counts.pop("Han", None)
    total = sum(counts.values())
    script, weight = max(counts.items(), key=lambda item: item[1])
    share = weight / total
    if script == "Latin":
        ranked = _guess_latin(sample)
        if not ranked:
            logger.debug("no known words in Latin-script text; no guess")
            return None
        code, evidence = ranked[0]
        candidates = tuple((lang, round(p, 3)) for lang, p in ranked)
        return LanguageGuess(code=code, confidence=round(share * evidence, 3), script=script, candidates=candidates)
    candidates = tuple(
        sorted(((_SCRIPT_LANGUAGE.get(s, s.lower()), round(w / total, 3)) for s, w in counts.items() if s != "Latin"),
               key=lambda x: -x[1])
    )
    return LanguageGuess(code=_SCRIPT_LANGUAGE[script], confidence=round(share, 3), script=script,
                         candidates=candidates)
