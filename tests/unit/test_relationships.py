from __future__ import annotations

from carrier.engine.relationships import (
    NEUTRAL,
    Relationship,
    VaderSentiment,
    decay,
    formality_of,
    react,
)

VADER = VaderSentiment()


def after(text: str, rel: Relationship | None = None, times: int = 1) -> Relationship:
    rel = rel or Relationship()
    for _ in range(times):
        rel = react(rel, text, VADER.compound(text), 1.0)
    return rel


def test_insults_raise_anger_and_lower_rapport() -> None:
    rel = after("you are a stupid useless fish, I hate you", times=3)
    assert rel.anger >= 6
    assert rel.rapport < NEUTRAL["rapport"]
    assert rel.trust < NEUTRAL["trust"]
    assert rel.is_angry


def test_kindness_raises_rapport_and_calms_anger() -> None:
    angry = Relationship(anger=7)
    rel = after("thank you so much, you are wonderful and I love talking to you", angry, 3)
    assert rel.rapport > NEUTRAL["rapport"]
    assert rel.anger < 7


def test_values_are_clamped_to_their_ranges() -> None:
    rel = after("I HATE YOU stupid idiot moron trash garbage!!!", times=30)
    assert rel.anger == 10 and rel.rapport == 0
    rel = after("Good evening, sir. Would you kindly help me? Thank you, regards.", times=30)
    assert -5 <= rel.formality <= 5 and rel.formality > 2


def test_formality_markers() -> None:
    assert formality_of("Good morning. Could you please help me? Thank you.") >= 3
    assert formality_of("lol bruh ur gonna love this haha") <= -3


def test_decay_moves_toward_neutral_without_overshooting() -> None:
    rel = Relationship(anger=8, rapport=1, trust=9, formality=-4)
    later = decay(rel, hours=10, rate=0.1)
    assert later.anger == 7 and later.rapport == 2 and later.trust == 8
    assert later.formality == -3
    settled = decay(rel, hours=1000, rate=0.1)
    assert settled.as_dict() == {k: round(v, 2) for k, v in NEUTRAL.items()}


def test_describe_puts_the_relationship_in_words() -> None:
    assert "angry" in Relationship(anger=7).describe("bob")
    assert "formally" in Relationship(formality=4).describe("bob")
    assert "neutral" in Relationship().describe("bob")
