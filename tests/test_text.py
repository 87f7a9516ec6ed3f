"""engine.text: sentence splitting, paragraph-preserving segmentation and script/stopword language guessing."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInputError
from engine.text import (
    LanguageGuess,
    base_language,
    detect_script_language,
    segment,
    split_paragraphs,
    split_sentences,
)

# --- sentence splitting --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello world. How are you? Fine!", ["Hello world.", "How are you?", "Fine!"]),
        ("Dr. Smith met Mr. Jones at 3 p.m. today. They talked.",
         ["Dr. Smith met Mr. Jones at 3 p.m. today.", "They talked."]),
        ("Pi is 3.14 roughly. Visit example.com now.", ["Pi is 3.14 roughly.", "Visit example.com now."]),
        ("Fruit, e.g. Apples, and i.e. Pears. Done.", ["Fruit, e.g. Apples, and i.e. Pears.", "Done."]),
        ("The U.S. Army marched. John F. Kennedy spoke.", ["The U.S. Army marched.", "John F. Kennedy spoke."]),
        ('She said "Stop." Then she left.', ['She said "Stop."', "Then she left."]),
        ('"Why?" he asked. (It was late.) We went home.',
         ['"Why?" he asked.', "(It was late.)", "We went home."]),
        ("Wait... what? Really… Yes.", ["Wait... what?", "Really…", "Yes."]),
        ("No. See No. 5 on p. 12. Fine.", ["No.", "See No. 5 on p. 12.", "Fine."]),
        ("1. Introduction to the topic.", ["1. Introduction to the topic."]),
        ("Am 3. Oktober ist Feiertag. Siehe z.B. hier.", ["Am 3. Oktober ist Feiertag.", "Siehe z.B. hier."]),
        ("¿Qué tal? ¡Muy bien! Gracias.", ["¿Qué tal?", "¡Muy bien!", "Gracias."]),
        ("Really?! Yes!!! OK.", ["Really?!", "Yes!!!", "OK."]),
        ("Привет. Как дела? Хорошо!", ["Привет.", "Как дела?", "Хорошо!"]),
        ("नमस्ते। आप कैसे हैं?", ["नमस्ते।", "आप कैसे हैं?"]),
    ],
)
def test_latin_and_spaced_scripts(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("你好。我很好！你呢？好的", ["你好。", "我很好！", "你呢？", "好的"]),
        ("我也走了!真的?好", ["我也走了!", "真的?", "好"]),  # half-width stops between CJK characters
        ("これはペンです。あれは本です。", ["これはペンです。", "あれは本です。"]),
        ("「こんにちは。」と彼は言った。「元気？」「はい。」",
         ["「こんにちは。」と彼は言った。", "「元気？」", "「はい。」"]),
        ("他说：“你好。”然后走了。", ["他说：“你好。”然后走了。"]),
        ("价格是3.5元。很便宜。", ["价格是3.5元。", "很便宜。"]),
        ("안녕하세요. 반갑습니다!", ["안녕하세요.", "반갑습니다!"]),
    ],
)
def test_cjk(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_line_breaks_end_sentences_and_blank_input_gives_nothing() -> None:
    assert split_sentences("Roses are red\r\nViolets are blue\n\n") == ["Roses are red", "Violets are blue"]
    assert split_sentences("") == []
    assert split_sentences(" \n\t ") == []


_ALPHABET = st.sampled_from(
    list("ab Z.!?…。！？「」“”\"')(，3 \n\t\r") + ["Dr.", "e.g.", "U.S.", "你好", "です", "\u3000"]
)


def _pieces_cover(text: str, pieces: list[str]) -> bool:
    """Each piece occurs in order, with only whitespace between, before and after them."""
    pos = 0
    for piece in pieces:
        found = text.find(piece, pos)
        if found < 0 or text[pos:found].strip():
            return False
        pos = found + len(piece)
    return not text[pos:].strip()


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join) | st.text(max_size=80))
def test_splitting_loses_nothing_but_whitespace(text: str) -> None:
    pieces = split_sentences(text)
    assert all(piece and piece == piece.strip() for piece in pieces)
    assert _pieces_cover(text, pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


# --- documents -----------------------------------------------------------------------------------------------------

TEXT = "  Title line\n\nHello there. How are you?\nSecond line.  \n\n\n  Para two! Yes.\n"


def test_segment_finds_paragraphs_lines_and_sentences() -> None:
    doc = segment(TEXT)
    assert [p.sentences for p in doc.paragraphs] == [
        ("Title line",), ("Hello there.", "How are you?", "Second line."), ("Para two!", "Yes."),
    ]
    assert len(doc.paragraphs[1].lines) == 2
    assert doc.sentences[0] == "Title line"


def test_rebuild_keeps_layout_and_joins_by_target_language() -> None:
    doc = segment(TEXT)
    assert doc.rebuild(doc.sentences) == TEXT
    upper = [s.upper() for s in doc.sentences]
    assert doc.rebuild(upper, target_lang="de") == TEXT.upper()
    assert doc.rebuild(upper, target_lang="zh-CN") == (
        "  TITLE LINE\n\nHELLO THERE.HOW ARE YOU?\nSECOND LINE.  \n\n\n  PARA TWO!YES.\n"
    )


def test_rebuild_from_cjk_source_adds_spaces_for_spaced_targets() -> None:
    doc = segment("你好。我很好！\n\n再见。")
    assert doc.rebuild(["Hello.", "I am fine!", "Bye."], target_lang="en") == "Hello. I am fine!\n\nBye."
    assert doc.rebuild(doc.sentences) == "你好。我很好！\n\n再见。"


def test_rebuild_strips_translations_and_skips_empty_ones() -> None:
    doc = segment("One. Two. Three.")
    assert doc.rebuild([" x\n", "", "z"], target_lang="en") == "x z"


def test_rebuild_refuses_a_wrong_count() -> None:
    with pytest.raises(InvalidInputError, match="2 translated sentences for a text of 3"):
        segment("One. Two. Three.").rebuild(["x", "y"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join) | st.text(max_size=80))
def test_rebuild_with_original_sentences_is_identity(text: str) -> None:
    doc = segment(text)
    assert doc.rebuild(doc.sentences) == text
    assert list(doc.sentences) == split_sentences(text)


def test_split_paragraphs() -> None:
    assert split_paragraphs(TEXT) == ["  Title line", "Hello there. How are you?\nSecond line.  ", "  Para two! Yes."]
    assert split_paragraphs("\n\n") == []


# --- language guessing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, code",
    [
        ("The weather is nice today and we are going to the park with the children.", "en"),
        ("Das Wetter ist heute schön und wir gehen mit den Kindern in den Park.", "de"),
        ("Il fait beau aujourd'hui et nous allons au parc avec les enfants.", "fr"),
        ("Hace buen tiempo hoy y vamos al parque con los niños.", "es"),
        ("Oggi è una bella giornata e andiamo al parco con i bambini.", "it"),
        ("O tempo está bom hoje e nós vamos ao parque com as crianças.", "pt"),
        ("Het weer is vandaag mooi en we gaan met de kinderen naar het park.", "nl"),
        ("今天天气很好，我们和孩子们一起去公园。", "zh"),
        ("今日は天気が良いので、子供たちと公園に行きます。", "ja"),
        ("오늘은 날씨가 좋아서 아이들과 공원에 갑니다.", "ko"),
        ("Сегодня хорошая погода, и мы идём в парк с детьми.", "ru"),
        ("الطقس جميل اليوم ونحن ذاهبون إلى الحديقة مع الأطفال.", "ar"),
        ("Ο καιρός είναι ωραίος σήμερα και πάμε στο πάρκο με τα παιδιά.", "el"),
        ("आज मौसम अच्छा है और हम बच्चों के साथ पार्क जा रहे हैं।", "hi"),
        ("วันนี้อากาศดีและเราจะไปสวนสาธารณะกับเด็กๆ", "th"),
        ("מזג האוויר נאה היום ואנחנו הולכים לפארק עם הילדים.", "he"),
    ],
)
def test_detect_language(text: str, code: str) -> None:
    guess = detect_script_language(text)
    assert isinstance(guess, LanguageGuess)
    assert guess.code == code
    assert guess.candidates[0][0] == code
    assert 0.3 <= guess.confidence <= 1.0


def test_detect_mixed_and_unknown() -> None:
    guess = detect_script_language("我喜欢用Python编程")
    assert guess is not None and guess.code == "zh" and guess.confidence < 1.0
    assert detect_script_language("12345 !!! ...") is None
    assert detect_script_language("") is None
    assert detect_script_language("Xyzzy plugh") is None  # Latin letters but no known words


@pytest.mark.parametrize(
    "code, base",
    [("zh-CN", "zh"), ("zh_Hant", "zh"), ("zho_Hans", "zh"), ("jpn_Jpan", "ja"), ("Japanese", "ja"),
     ("pt-BR", "pt"), ("EN", "en"), ("kor_Hang", "ko")],
)
def test_base_language(code: str, base: str) -> None:
    assert base_language(code) == base
