"""engine.subtitles: writers produce files that players accept, and the parsers read them back."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.subtitles import (
    Segment,
    clean_segments,
    format_timestamp,
    parse_srt,
    parse_vtt,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
    write_all,
)

# what a speech model may hand over: unordered, overlapping, zero-length, multi-line, odd characters
MESSY = [
    Segment(0.0, 2.5, " Hello  world. "),
    Segment(2.0, 4.0, "Overlapping\n\nstart"),  # starts before the previous end
    Segment(4.0, 4.0, "Zero length"),
    Segment(3.9, 3.95, "Inside the previous one"),  # before the previous end, and ends before it too
    Segment(-0.5, 0.2, "Negative start"),
    Segment(6.0, 7.25, "Arrows --> and <tags> & ampersands"),
    Segment(8.0, 9.0, "   "),  # nothing to show
    Segment(3661.001, 3662.9996, "An hour in"),
]


def _assert_valid_timeline(segments: list[Segment]) -> None:
    previous_end = 0.0
    for segment in segments:
        assert segment.start >= previous_end and segment.end > segment.start, segments
        assert segment.text and "\n" not in segment.text
        previous_end = segment.end


def test_clean_segments_orders_and_clamps():
    cleaned = clean_segments(MESSY)
    _assert_valid_timeline(cleaned)
    assert [s.text for s in cleaned][:3] == ["Negative start", "Hello world.", "Overlapping start"]
    assert cleaned[0] == Segment(0.0, 0.2, "Negative start")
    assert cleaned[1].start == 0.2  # pushed after the previous end
    assert cleaned[-1] == Segment(3661.001, 3663.0, "An hour in")  # rounded to milliseconds
    assert len(cleaned) == len(MESSY) - 1  # the blank one is dropped
    with pytest.raises(InvalidInputError):
        clean_segments([Segment(float("nan"), 1.0, "x")])


def test_format_timestamp():
    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(3725.5) == "01:02:05.500"
    assert format_timestamp(59.9996, ",") == "00:01:00,000"
    assert format_timestamp(-1) == "00:00:00.000"
    assert format_timestamp(100 * 3600) == "100:00:00.000"


def test_srt_layout():
    srt = to_srt([Segment(0.0, 1.5, "First line"), Segment(1.5, 3.0, "Second\nline")])
    assert srt == (
        "1\n00:00:00,000 --> 00:00:01,500\nFirst line\n\n"
        "2\n00:00:01,500 --> 00:00:03,000\nSecond line\n"
    )
    assert to_srt([]) == ""


def test_vtt_layout_and_escaping():
    vtt = to_vtt([Segment(0.0, 1.5, "a --> b & <c>")])
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\na --&gt; b &amp; &lt;c&gt;\n"
    assert to_vtt([]) == "WEBVTT\n"
    body = vtt.split("\n", 3)[3]
    assert "-->" not in body


@pytest.mark.parametrize(("write", "parse"), [(to_srt, parse_srt), (to_vtt, parse_vtt)], ids=["srt", "vtt"])
def test_round_trip(write, parse):
    text = write(MESSY)
    assert "\n\n\n" not in text  # no blank line inside a cue
    parsed = parse(text)
    _assert_valid_timeline(parsed)
    assert parsed == clean_segments(MESSY)
    assert parse(text.replace("\n", "\r\n")) == parsed  # Windows line endings
    assert parse("\ufeff" + text) == parsed  # byte order mark


def test_srt_indices_and_timing_lines():
    srt = to_srt(MESSY)
    blocks = srt.strip().split("\n\n")
    assert [block.split("\n")[0] for block in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    timing = re.compile(r"^\d{2,}:\d{2}:\d{2},\d{3} --> \d{2,}:\d{2}:\d{2},\d{3}$")
    assert all(timing.match(block.split("\n")[1]) for block in blocks)


def test_parse_vtt_from_elsewhere():
    vtt = (
        "WEBVTT - made by hand\nKind: captions\n\n"
        "NOTE a comment\nover two lines\n\n"
        "STYLE\n::cue { color: yellow }\n\n"
        "intro\n00:01.000 --> 00:02.500 align:start position:10%\n<v Roger>Hi &amp; welcome</v>\nsecond line\n\n"
        "01:00:00.000 --> 01:00:01.000\nLater\n"
    )
    assert parse_vtt(vtt) == [Segment(1.0, 2.5, "Hi & welcome second line"), Segment(3600.0, 3601.0, "Later")]


def test_parsers_reject_garbage():
    with pytest.raises(InvalidInputError):
        parse_vtt("1\n00:00:00,000 --> 00:00:01,000\nno header\n")
    with pytest.raises(InvalidInputError):
        parse_srt("1\nnot a timing line\ntext\n")
    assert parse_srt("") == [] and parse_vtt("WEBVTT\n") == []


def test_txt_and_json():
    segments = [Segment(0.0, 1.0, "One."), Segment(1.0, 2.0, "Two\nlines.")]
    assert to_txt(segments) == "One.\nTwo lines.\n"
    document = json.loads(to_json(segments, language="en", model="tiny", source=Path("a.wav")))
    assert document["language"] == "en" and document["model"] == "tiny" and document["source"] == "a.wav"
    assert document["text"] == "One. Two lines."
    assert document["segments"] == [
        {"start": 0.0, "end": 1.0, "text": "One."},
        {"start": 1.0, "end": 2.0, "text": "Two lines."},
    ]
    assert "é" in to_json([Segment(0, 1, "café")])  # written as UTF-8, not \\u escapes


def test_write_all(tmp_path):
    paths = write_all(MESSY, tmp_path / "out", "../my talk (final).mp3", {"language": "en"})
    assert list(paths) == ["srt", "vtt", "txt", "json"]
    for suffix, path in paths.items():
        assert path.parent == tmp_path / "out" and path.name == f"my_talk_final_.mp3.{suffix}"
        assert path.read_text(encoding="utf-8")
    assert parse_srt(paths["srt"].read_text(encoding="utf-8")) == clean_segments(MESSY)
    assert parse_vtt(paths["vtt"].read_text(encoding="utf-8")) == clean_segments(MESSY)
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["language"] == "en"
    assert write_all([], tmp_path, "///", None)["txt"].name == "transcript.txt"
