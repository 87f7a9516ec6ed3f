"""Transcript segments and the subtitle files made from them: SRT, WebVTT, plain text and JSON.

Pure functions, no model involved. Every writer first passes the segments through :func:`clean_segments`, so
whatever a speech model returns, the files are valid for common players: times non-negative, in order, not
overlapping and each cue longer than zero after rounding to milliseconds; cue text on one line. The parsers
read back what the writers produce (and ordinary files from elsewhere); the tests use them for round trips.
"""
from __future__ import annotations

import html
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

logger = logging.getLogger(__name__)

MIN_CUE_MS = 1  # milliseconds: the shortest cue kept after clamping, so that every cue's end is after its start
FORMATS = ("srt", "vtt", "txt", "json")  # file suffixes written by write_all, in this order
DEFAULT_STEM = "transcript"  # file name used when the given stem has no usable characters

_SRT_TIME = r"(\d+):(\d{2}):(\d{2})[,.](\d{3})"
_VTT_TIME = r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})"
_SRT_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}\s*$")
_VTT_TIMING = re.compile(rf"^\s*{_VTT_TIME}\s+-->\s+{_VTT_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>")
_UNSAFE_STEM = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class Segment:
    """A span of transcript: ``start`` and ``end`` in seconds from the start of the audio, and its text."""

    start: float
    end: float
    text: str


def clean_segments(segments: Iterable[Segment]) -> list[Segment]:
    """Make segments safe to write: text on one line with runs of whitespace collapsed, empty ones dropped,
    sorted by start, times rounded to milliseconds and clamped so that each start is at or after 0 and the
    previous end, and each end at least :data:`MIN_CUE_MS` after its start."""
    ordered = sorted(segments, key=lambda segment: segment.start)  # stable: equal starts keep their order
    cleaned: list[Segment] = []
    previous_end_ms = 0
    for segment in ordered:
        text = " ".join(segment.text.split())
        if not text:
            continue
        if not (math.isfinite(segment.start) and math.isfinite(segment.end)):
            raise InvalidInputError(f"Segment {text[:40]!r} has an invalid time ({segment.start}, {segment.end}).")
        start_ms = max(round(segment.start * 1000), previous_end_ms)
        end_ms = max(round(segment.end * 1000), start_ms + MIN_CUE_MS)
        cleaned.append(Segment(start_ms / 1000, end_ms / 1000, text))
        previous_end_ms = end_ms
    return cleaned


def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """``3725.5`` -> ``"01:02:05.500"`` (hours always shown; SRT passes ``decimal_marker=","``)."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def to_srt(segments: Iterable[Segment]) -> str:
    """SubRip: cues numbered from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each cue."""
    cues = [
        f"{index}\n{format_timestamp(s.start, ',')} --> {format_timestamp(s.end, ',')}\n{s.text}\n"
        for index, s in enumerate(clean_segments(segments), start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Iterable[Segment]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` with escaped text."""
    cues = [
        f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_escape_vtt(s.text)}\n"
        for s in clean_segments(segments)
    ]
    return "\n".join(["WEBVTT\n", *cues])


def to_txt(segments: Iterable[Segment]) -> str:
    """Plain text, one segment per line."""
    return "".join(f"{s.text}\n" for s in clean_segments(segments))


def to_json(segments: Iterable[Segment], **meta: Any) -> str:
    """JSON object: the ``meta`` fields (language, model, ...), ``text`` (all segments joined) and ``segments``
    as ``{"start", "end", "text"}``. Values that JSON cannot hold (paths, ...) are written as strings."""
    cleaned = clean_segments(segments)
    document = {
        **meta,
        "text": " ".join(s.text for s in cleaned),
        "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in cleaned],
    }
    return json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n"


def parse_srt(text: str) -> list[Segment]:
    """Read SubRip text into segments (cue lines joined with spaces). Raises InvalidInputError on a cue
    without a valid timing line."""
    segments = []
    for block in _blocks(text):
        lines = block.split("\n")
        timing_at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        match = _SRT_TIMING.match(lines[timing_at]) if timing_at is not None else None
        if match is None:
            raise InvalidInputError(f"Not a valid SRT cue: {block[:80]!r}.")
        start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
        segments.append(Segment(start, end, " ".join(lines[timing_at + 1 :]).strip()))
    return segments


def parse_vtt(text: str) -> list[Segment]:
    """Read WebVTT text into segments: the header, NOTE, STYLE and REGION blocks are skipped, cue settings
    ignored, tags removed and character references unescaped."""
    blocks = _blocks(text)
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise InvalidInputError("Not a WebVTT file: it must start with 'WEBVTT'.")
    segments = []
    for block in blocks[1:]:
        if block.split(maxsplit=1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        lines = block.split("\n")
        timing_at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        match = _VTT_TIMING.match(lines[timing_at]) if timing_at is not None else None
        if match is None:
            raise InvalidInputError(f"Not a valid WebVTT cue: {block[:80]!r}.")
        start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
        body = " ".join(lines[timing_at + 1 :]).strip()
        segments.append(Segment(start, end, html.unescape(_TAG.sub("", body))))
    return segments


def write_all(
    segments: Iterable[Segment], folder: str | Path, stem: str, meta: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``stem.srt``, ``.vtt``, ``.txt`` and ``.json`` into ``folder`` (created if missing) and return
    ``{"srt": path, ...}``. ``stem`` is reduced to safe file-name characters (an upload's name may hold any)."""
    cleaned = clean_segments(segments)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    safe_stem = _UNSAFE_STEM.sub("_", Path(stem).name).strip("._") or DEFAULT_STEM
    writers = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "json": lambda s: to_json(s, **dict(meta or {}))}
    paths = {}
    for suffix in FORMATS:
        path = folder / f"{safe_stem}.{suffix}"
        path.write_text(writers[suffix](cleaned), encoding="utf-8")
        paths[suffix] = path
    logger.debug("wrote %d segments to %s/%s.{%s}", len(cleaned), folder, safe_stem, ",".join(FORMATS))
    return paths


def _escape_vtt(text: str) -> str:
    # '&' and '<' start character references and tags in cue text; '>' is escaped so that '-->' cannot appear
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _blocks(text: str) -> list[str]:
    """Blank-line separated blocks, with a byte order mark and Windows or old Mac line endings removed."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [block.strip("\n") for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


def _seconds(parts: tuple[str | None, ...]) -> float:
    hours, minutes, secs, ms = (int(part) if part else 0 for part in parts)
    return hours * 3600 + minutes * 60 + secs + ms / 1000
