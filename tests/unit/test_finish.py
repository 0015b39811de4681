from __future__ import annotations

import random

from carrier.engine.emotes import render_emotes
from carrier.engine.mood import Mood
from carrier.engine.relationships import Relationship
from carrier.engine.safety import clamp_length, clean_text, neutralize_mentions
from carrier.engine.tone import TERSE_WORDS, apply_tone


def test_known_emotes_become_markup_and_unknown_are_dropped() -> None:
    emotes = {"blobfish": "<:blobfish:123>"}
    assert render_emotes("hi :blobfish: and :nope:", emotes) == "hi <:blobfish:123> and"
    assert render_emotes("already <:blobfish:123>", emotes) == "already <:blobfish:123>"
    assert render_emotes("time is 10:30:00", emotes) == "time is 10:30:00"


def test_mass_and_role_mentions_never_leave() -> None:
    out = neutralize_mentions("@everyone look @here <@&42> hi <@7>")
    assert "@everyone" not in out and "@here" not in out and "<@&42>" not in out
    assert "<@7>" in out


def test_clean_text_handles_invalid_utf8_and_controls() -> None:
    broken = b"caf\xc3 ok\x00\x07".decode("utf-8", "surrogateescape")
    cleaned = clean_text(broken)
    cleaned.encode("utf-8")  # must not raise
    assert "\x00" not in cleaned and "ok" in cleaned


def test_clamp_length_cuts_on_sentence_boundaries() -> None:
    text = "First sentence here. " * 200
    out = clamp_length(text, 2000)
    assert len(out) <= 2000 and out.endswith(".")


def test_angry_bot_is_terse() -> None:
    text = "Well, I have been thinking about the ocean for a very long time. And sharks."
    out, applied = apply_tone(text, Relationship(anger=9), Mood(), "bob", random.Random(1))
    assert len(out.split()) <= TERSE_WORDS and "terse (angry)" in applied


def test_formal_user_gets_a_formal_answer() -> None:
    out, applied = apply_tone(
        "yeah lol i'm gonna swim!", Relationship(formality=4), Mood(), "bob", random.Random(1)
    )
    assert out == "Yes I am going to swim." and applied == ["formal"]


def test_casual_user_gets_a_casual_answer() -> None:
    out, _ = apply_tone(
        "The sea is calm today.", Relationship(formality=-4), Mood(), "bob", random.Random(1)
    )
    assert out == "the sea is calm today"
