"""Tokenising, transitions, digests and the in-memory TextChain (no database)."""

from __future__ import annotations

import hashlib
import random

import pytest

from carrier.generation.markov import (
    BEGIN,
    END,
    MAX_LEARN_WORDS,
    MAX_WORD_CHARS,
    TextChain,
    digest,
    normalise,
    seed_words,
    tokenize,
    transitions,
)

PERSONA_LINES = [
    "the ocean is my home and the tide is my clock",
    "i love the deep blue water more than anything",
    "every morning the tide brings me something new",
    "never trust a seagull with your lunch",
    "the water is cold but my heart is warm",
    "sharks are just misunderstood fish with big teeth",
    "my clock says it is time for a nap",
    "something new washed up on the beach today",
]


def test_tokenize_splits_on_any_whitespace_and_drops_empty_words() -> None:
    assert tokenize("  hello\tthere \n  friend  ") == ["hello", "there", "friend"]
    assert tokenize("   ") == []


def test_tokenize_drops_mentions_so_the_bot_never_pings_from_a_chain() -> None:
    text = "hey <@123> and <@!456> and <@&789> look @everyone @here"
    assert tokenize(text) == ["hey", "and", "and", "look"]


def test_tokenize_drops_overlong_words_and_caps_the_message() -> None:
    blob = "x" * (MAX_WORD_CHARS + 1)
    assert tokenize(f"a {blob} b") == ["a", "b"]
    assert tokenize("y" * MAX_WORD_CHARS) == ["y" * MAX_WORD_CHARS]
    assert len(tokenize(" ".join(["w"] * 500))) == MAX_LEARN_WORDS


def test_tokenize_strips_control_characters_that_would_break_the_encoding() -> None:
    assert tokenize(f"a{BEGIN}b c{END} \x00d") == ["ab", "c", "d"]


def test_transitions_pad_with_begin_and_end_with_end() -> None:
    assert transitions(["a", "b", "c"], 2) == [
        (BEGIN, f"{BEGIN} {BEGIN}", "a"),
        (BEGIN, f"{BEGIN} a", "b"),
        ("a", "a b", "c"),
        ("b", "b c", END),
    ]
    assert transitions(["a", "b"], 1) == [(BEGIN, BEGIN, "a"), ("a", "a", "b"), ("b", "b", END)]


def test_transitions_of_state_size_three_fit_the_state_column() -> None:
    word = "w" * MAX_WORD_CHARS
    states = [state for _, state, _ in transitions([word] * 5, 3)]
    assert max(len(state) for state in states) <= 600


def test_digest_ignores_case_and_spacing_but_not_words() -> None:
    assert digest("Hello   World") == digest("hello world") == digest(" HELLO\nworld ")
    assert digest("hello world") != digest("hello worlds")
    assert normalise("  A  b\tC ") == "a b c"


def test_digest_is_a_signed_64_bit_blake2b_of_the_normalised_text() -> None:
    expected = int.from_bytes(
        hashlib.blake2b(b"hello world", digest_size=8).digest(), "big", signed=True
    )
    assert digest("Hello  World") == expected
    values = [digest(f"message {i}") for i in range(2000)]
    assert all(-(2**63) <= v < 2**63 for v in values)
    assert any(v < 0 for v in values)
    assert len(set(values)) == len(values)


def test_seed_words_skip_stopwords_and_prefer_longer_words() -> None:
    for seed in range(20):
        seeds = seed_words("is the Octopuses in the house?", random.Random(seed))
        assert "the" not in seeds and "is" not in seeds and "in" not in seeds
        assert seeds[0] == "Octopuses"
        assert "octopuses" in seeds  # also the lowercase form: chains keep words as typed
        assert "house" in seeds and "house?" in seeds  # with and without punctuation
    assert seed_words("the a of", random.Random(1)) == []


async def test_text_chain_never_repeats_a_source_verbatim() -> None:
    chain = TextChain(PERSONA_LINES)
    sources = {normalise(line) for line in PERSONA_LINES}
    outputs = set()
    for seed in range(300):
        text = await chain.generate("tell me about the tide", random.Random(seed))
        if text is not None:
            assert normalise(text) not in sources
            assert len(text.split()) >= 2
            outputs.add(text)
    assert len(outputs) >= 5  # it does speak, and not always the same line


async def test_text_chain_is_seeded_by_the_words_of_the_message() -> None:
    chain = TextChain(PERSONA_LINES)
    for word in ("tide", "water", "clock"):
        hits = 0
        for seed in range(30):
            text = await chain.generate(f"so what about the {word}?", random.Random(seed))
            assert text is not None
            hits += word in text.split()
        assert hits >= 25, word


async def test_text_chain_opens_with_the_seed_word_when_a_line_did() -> None:
    chain = TextChain(PERSONA_LINES)
    # "every" opens a line whose words lead into other lines ("the tide", "something new").
    texts = {await chain.generate("EVERY single time", random.Random(s)) for s in range(30)}
    assert texts and all(t is not None and t.split()[0] == "every" for t in texts)


async def test_text_chain_is_deterministic_for_a_seeded_rng() -> None:
    chain = TextChain(PERSONA_LINES)
    first = [await chain.generate("the water", random.Random(s)) for s in range(20)]
    again = [await chain.generate("the water", random.Random(s)) for s in range(20)]
    assert first == again
    assert len(set(first)) > 1


@pytest.mark.parametrize(
    "texts",
    [
        ["only one message in this chain"],
        ["first line here", "second one there"],  # no shared state: every walk is a source
        ["hi", "yo"],  # too short to learn
        [],
    ],
)
async def test_text_chain_gives_none_when_it_could_only_repeat_a_source(
    texts: list[str],
) -> None:
    chain = TextChain(texts)
    for seed in range(10):
        # Seeded at the openings or not at all: every possible walk is a whole source.
        assert await chain.generate("only first second zzz", random.Random(seed)) is None


async def test_text_chain_of_one_text_gives_at_most_a_fragment() -> None:
    chain = TextChain(["only one message in this chain"])
    for seed in range(10):
        text = await chain.generate("this message", random.Random(seed))
        assert text is None or (
            normalise(text) != "only one message in this chain" and len(text.split()) >= 2
        )


async def test_text_chain_respects_max_words() -> None:
    chain = TextChain(["a b a b a b a b a b a b c", "b a b a b a b a d"], state_size=1)
    for seed in range(20):
        text = await chain.generate("b", random.Random(seed), max_words=5)
        if text is not None:
            assert len(text.split()) <= 5


def test_text_chain_learns_every_persona_line() -> None:
    lines = [f"{line} number {i}" for i in range(7) for line in PERSONA_LINES]
    chain = TextChain(lines)
    assert len(chain) == len(lines)
