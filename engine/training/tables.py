"""Labelled examples for fine-tuning a classifier: read from a CSV/TSV table (a file, or its text) or from
``(text, label)`` pairs, checked, and split into a training and a held-out part.

Every problem is named before any compute (:func:`inspect`): a file that is not a table, a missing column, empty texts
or labels, too few rows, one label only, a label with fewer than two examples, the same text in the training and the
test data, a text given two different labels, test labels the model would never have seen. The split is stratified
and seeded (:func:`split`): each label keeps its share on both sides, and the same seed gives the same split.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence, Union

from ..errors import InputTooLargeError, InvalidInputError, InvalidOptionsError

log = logging.getLogger(__name__)

MIN_ROWS = 10  # fewer labelled examples than this cannot be split into training and held-out parts that mean much
MAX_BYTES = 100 * 2**20  # the app's upload limit (LLM_LAB_MAX_UPLOAD_MB) applies too
TEXT_NAMES = ("text", "sentence", "review", "content", "comment", "body")
LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target")
DELIMITERS = ",;\t|"


@dataclasses.dataclass(frozen=True)
class CsvText:
    """The text of a CSV/TSV table (header row first). The app wraps what arrives over HTTP in this, so that a string
    is never taken for a path on the server."""

    text: str


Source = Union[CsvText, str, Path, Sequence[tuple[str, str]]]


@dataclasses.dataclass(frozen=True)
class Examples:
    """Labelled texts, in order, and where they came from."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    source: str  # "reviews.csv", "CSV text", "24 pairs"
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.texts, self.labels))

    def digest(self) -> str:
        """A SHA-256 of the examples (text and label, in order): the card's data hash."""
        h = hashlib.sha256()
        for text, label in zip(self.texts, self.labels):
            h.update(f"{text}\t{label}\n".encode("utf-8"))
        return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class DataReport:
    """What the data looks like and what is wrong with it: the Fine-tune tab shows it before training."""

    train_counts: dict[str, int]
    test_counts: dict[str, int]  # of the separate test table, or of the held-out split
    held_out: bool  # the test part is split from the training table (not a separate table)
    problems: tuple[str, ...]  # any of these stops training
    notes: tuple[str, ...]  # things done to the data that the user should know

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(self.train_counts))

    def check(self) -> None:
        """Raise :class:`InvalidInputError` naming every problem, if there are any."""
        if self.problems:
            raise InvalidInputError(" ".join(self.problems))


# --- reading -----------------------------------------------------------------------------------------------------


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """A table file's text (UTF-8, with or without a byte-order mark; Latin-1 as the last resort)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InvalidInputError(f"Cannot read {path.name}: {e.strerror or e}. Upload the file again.") from e
    if size > max_bytes:
        raise InputTooLargeError(f"{path.name} has {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
                                 "Use fewer rows.")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise InvalidInputError(f"{path.name} is not a table: it holds binary data. Give a CSV or TSV file with a "
                                "header row such as text,label.")
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInputError(f"{path.name} is not text.")  # pragma: no cover - latin-1 decodes any bytes


def columns(text: str) -> list[str]:
    """The column names in a table's header row."""
    header, _ = _header(text, "the table")
    return [c for c in header if c]


def _delimiter(first_line: str, what: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        shown = first_line[:60] + ("…" if len(first_line) > 60 else "")
        raise InvalidInputError(f"{what} is not a table: its first line ({shown!r}) has no comma, semicolon or tab "
                                "between column names. It needs a header row such as text,label, then one row per "
                                "example.")
    return best


def _header(text: str, what: str) -> tuple[list[str], str]:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"{what} is empty: give a header row such as text,label, then one row per example.")
    if "\x00" in text:
        raise InvalidInputError(f"{what} is not a table: it holds binary data.")
    text = text.lstrip("\ufeff")
    first = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    delimiter = _delimiter(first, what)
    try:
        header = next(csv.reader(io.StringIO(first), delimiter=delimiter))
    except (csv.Error, StopIteration) as e:
        raise InvalidInputError(f"{what} is not a table: its header row cannot be read ({e}).") from e
    return [c.strip() for c in header], delimiter


def _pick(names: list[str], wanted: str | None, usual: Sequence[str], role: str, what: str) -> int:
    listing = ", ".join(repr(n) for n in names if n)
    if wanted:
        if wanted in names:
            return names.index(wanted)
        raise InvalidInputError(f"{what} has no column {wanted!r}; its columns are {listing}. Choose the {role} "
                                f"column ({role}_column=...).")
    lower = [n.lower() for n in names]
    for name in usual:
        if name in lower:
            return lower.index(name)
    raise InvalidInputError(f"{what} has no {role} column: its columns are {listing}, and none is called "
                            f"{' or '.join(repr(u) for u in usual[:2])}. Say which one is ({role}_column=...).")


def parse_table(text: str, text_column: str | None = None, label_column: str | None = None,
                what: str = "The table", max_bytes: int = MAX_BYTES) -> Examples:
    """The (text, label) rows of a CSV/TSV table. The delimiter is the one the header row uses most. A row with more
    cells than the header (a text with commas and no quotes) keeps the extra cells in its text."""
    if isinstance(text, str) and len(text.encode("utf-8", "replace")) > max_bytes:
        raise InputTooLargeError(f"{what} has more than {max_bytes / 2**20:.0f} MB; use fewer rows.")
    header, delimiter = _header(text, what)
    ti = _pick(header, text_column, TEXT_NAMES, "text", what)
    li = _pick(header, label_column, LABEL_NAMES, "label", what)
    if ti == li:
        raise InvalidOptionsError(f"The text and the label column are the same ({header[ti]!r}); choose two columns.")
    texts, labels, merged = [], [], 0
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff").lstrip("\r\n"), newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise InvalidInputError(f"{what} is malformed ({e}); check its quoting.") from e
    for row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        extra = len(row) - len(header)
        if extra > 0:  # unquoted delimiters inside the text: give the extra cells back to the text column
            row = row[:ti] + [delimiter.join(row[ti:ti + extra + 1])] + row[ti + extra + 1:]
            merged += 1
        texts.append(row[ti].strip() if ti < len(row) else "")
        labels.append(row[li].strip() if li < len(row) else "")
    notes = (f"{merged} rows had more cells than the header (a {delimiter!r} inside the text, without quotes); "
             "the extra cells were kept as part of the text.",) if merged else ()
    return Examples(tuple(texts), tuple(labels), what, notes)


def load(source: Source, text_column: str | None = None, label_column: str | None = None, what: str = "training",
         max_bytes: int = MAX_BYTES) -> Examples:
    """Examples from any source: ``(text, label)`` pairs, :class:`CsvText`, a path to a CSV/TSV file, or (from Python)
    a string holding a table's text (one with a line break) or a file's path (one without)."""
    name = f"The {what} data"
    if isinstance(source, CsvText):
        return parse_table(source.text, text_column, label_column, name, max_bytes)
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source.strip()):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"{name}: there is no file {str(source)[:200]!r}. Give a CSV/TSV file, its text "
                                    "(header row first), or a list of (text, label) pairs.")
        examples = parse_table(read_text(path, max_bytes), text_column, label_column, f"{path.name}", max_bytes)
        return dataclasses.replace(examples, source=path.name)
    if isinstance(source, str):
        return parse_table(source, text_column, label_column, name, max_bytes)
    return _from_pairs(source, name)


def _from_pairs(pairs: Iterable, name: str) -> Examples:
    texts, labels = [], []
    try:
        items = list(pairs)
    except TypeError as e:
        raise InvalidInputError(f"{name} must be a CSV/TSV file, its text, or a list of (text, label) pairs.") from e
    for i, item in enumerate(items, start=1):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InvalidInputError(f"{name}: item {i} is {str(item)[:60]!r}, not a (text, label) pair.")
        text, label = item
        if not isinstance(text, str):
            raise InvalidInputError(f"{name}: the text of item {i} is {type(text).__name__}, not text.")
        texts.append(text.strip())
        labels.append(str(label).strip() if label is not None else "")
    return Examples(tuple(texts), tuple(labels), f"{len(items)} pairs")


# --- checking and splitting --------------------------------------------------------------------------------------


def _rows(indices: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def _clean(examples: Examples, what: str, problems: list[str], notes: list[str]) -> Examples:
    """Drop exact duplicate rows (with a note); name empty texts/labels and texts with two labels as problems."""
    empty_text = [i for i, t in enumerate(examples.texts) if not t]
    empty_label = [i for i, (t, lab) in enumerate(zip(examples.texts, examples.labels)) if t and not lab]
    if empty_text:
        problems.append(f"{len(empty_text)} rows of the {what} data have an empty text (rows {_rows(empty_text)}); "
                        "remove them or fill them in.")
    if empty_label:
        problems.append(f"{len(empty_label)} rows of the {what} data have no label (rows {_rows(empty_label)}).")
    first: dict[str, str] = {}
    keep, duplicates, conflicts = [], 0, []
    for i, (text, label) in enumerate(zip(examples.texts, examples.labels)):
        if not text or not label:
            continue
        if text in first:
            if first[text] != label:
                conflicts.append(f"{text[:50]!r} ({first[text]} and {label})")
            duplicates += 1
            continue
        first[text] = label
        keep.append(i)
    if conflicts:
        problems.append(f"The {what} data gives {len(conflicts)} texts two different labels, e.g. {conflicts[0]}; "
                        "decide on one label per text.")
    if duplicates and not conflicts:
        notes.append(f"{duplicates} duplicate rows of the {what} data were dropped (the same text and label).")
    return Examples(tuple(examples.texts[i] for i in keep), tuple(examples.labels[i] for i in keep), examples.source,
                    examples.notes)


def inspect(train: Examples, test: Examples | None = None, test_fraction: float = 0.2) -> tuple[DataReport, Examples,
                                                                                                Examples | None]:
    """Check the data; returns the report (label counts, problems, notes) and the cleaned training and test data."""
    problems: list[str] = []
    notes: list[str] = list(train.notes) + (list(test.notes) if test is not None else [])
    train = _clean(train, "training", problems, notes)
    if test is not None:
        test = _clean(test, "test", problems, notes)
    counts = train.counts()
    if len(train) < MIN_ROWS:
        problems.append(f"The training data has {len(train)} usable rows; fine-tuning needs at least {MIN_ROWS} "
                        "(and a few per label).")
    if len(counts) == 1:
        problems.append(f"Every training example has the label {next(iter(counts))!r}: a classifier needs at least "
                        "two labels.")
    rare = [f"{label!r} ({n})" for label, n in counts.items() if n < 2]
    if rare and len(counts) > 1:
        problems.append(f"Each label needs at least 2 examples (one to learn from, one to test on); too few: "
                        f"{', '.join(rare[:5])}.")
    if test is not None:
        unseen = sorted(set(test.labels) - set(counts))
        if unseen:
            problems.append(f"The test data has labels the training data never shows: {', '.join(map(repr, unseen))}.")
        shared = sorted(set(train.texts) & set(test.texts))
        if shared:
            problems.append(f"{len(shared)} texts are in both the training and the test data (e.g. "
                            f"{shared[0][:60]!r}); a test must be on unseen examples, so remove them from one side.")
        if len(test) == 0:
            problems.append("The test data has no usable rows.")
        test_counts = test.counts()
    else:
        if not 0.05 <= test_fraction <= 0.5:
            raise InvalidOptionsError(f"test_fraction must be between 0.05 and 0.5, got {test_fraction}.")
        test_counts = {label: _held_out_count(n, test_fraction) for label, n in counts.items()}
    report = DataReport(counts, dict(sorted(test_counts.items())), test is None, tuple(problems),
                        tuple(dict.fromkeys(notes)))
    return report, train, test


def _held_out_count(n: int, fraction: float) -> int:
    """How many of a label's ``n`` examples the split holds out: its share, at least one, and never all."""
    return min(max(1, round(n * fraction)), n - 1) if n >= 2 else 0


def split(examples: Examples, test_fraction: float = 0.2, seed: int = 0) -> tuple[Examples, Examples]:
    """A stratified, seeded split: each label's examples shuffled with ``seed``, its share held out."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(examples.labels):
        by_label.setdefault(label, []).append(i)
    train_idx, test_idx = [], []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        k = _held_out_count(len(idx), test_fraction)
        test_idx += idx[:k]
        train_idx += idx[k:]
    train_idx.sort()
    test_idx.sort()

    def part(idx: list[int], name: str) -> Examples:
        return Examples(tuple(examples.texts[i] for i in idx), tuple(examples.labels[i] for i in idx),
                        f"{examples.source} ({name})")

    return part(train_idx, "training part"), part(test_idx, f"held-out {test_fraction:.0%}")
