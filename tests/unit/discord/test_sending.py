from __future__ import annotations

import pytest

from carrier.clients.discord.sending import DISCORD_LIMIT, split_message


def test_short_text_is_one_piece() -> None:
    assert split_message("  hello there.  ") == ["hello there."]
    assert split_message("") == []


def test_long_text_splits_on_sentence_boundaries_under_the_limit() -> None:
    sentences = [f"Sentence number {i} is about the sea and its fish." for i in range(120)]
    text = " ".join(sentences)
    pieces = split_message(text)
    assert len(pieces) > 1
    assert all(len(p) < DISCORD_LIMIT for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    # Nothing lost, nothing reordered.
    assert " ".join(pieces) == text


def test_small_limit_prefers_sentence_then_space() -> None:
    assert split_message("One two. Three four five six.", limit=12) == [
        "One two.",
        "Three four",
        "five six.",
    ]


def test_question_and_exclamation_end_sentences() -> None:
    text = "Is it? " * 5 + "Yes! " * 5
    pieces = split_message(text, limit=20)
    assert all(len(p) <= 20 for p in pieces)
    assert all(p.endswith(("?", "!")) for p in pieces)


def test_line_break_used_when_no_sentence_ends() -> None:
    text = ("word " * 5).strip() + "\n" + ("more " * 10).strip()
    pieces = split_message(text, limit=30)
    assert pieces[0] == ("word " * 5).strip()


def test_a_word_longer_than_the_limit_is_cut() -> None:
    pieces = split_message("x" * 45, limit=20)
    assert pieces == ["x" * 20, "x" * 20, "x" * 5]


def test_limit_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        split_message("hello", limit=3)
