"""The per-guild Markov chains on a real database (SQLite, and PostgreSQL when marked)."""

from __future__ import annotations

import random

import pytest

from carrier.generation.markov import (
    BEGIN,
    END,
    MarkovGenerator,
    digest,
    normalise,
)
from carrier.settings import MarkovSettings
from carrier.store import markov as markov_store
from carrier.store.database import create_engine
from carrier.store.markov import LearnBatch
from carrier.store.store import Store

pytestmark = pytest.mark.postgres

AGENT = "fish"
GUILD = "g1"
OTHER_GUILD = "g2"

CHAT = [
    "does anyone want pizza tonight",
    "i want pizza with extra cheese tonight",
    "extra cheese is the best thing ever",
    "the best pizza in town is downtown",
    "anyone up for a movie tonight",
    "a movie sounds great after pizza",
]


def generator(store: Store, **settings: int) -> MarkovGenerator:
    return MarkovGenerator(store.markov, MarkovSettings(**settings))  # type: ignore[arg-type]


async def learn(store: Store, texts: list[str], guild: str = GUILD) -> list[bool]:
    gen = generator(store)
    learned = []
    for text in texts:
        async with store.engine.begin() as conn:
            learned.append(await gen.learn_in(conn, AGENT, guild, text))
    return learned


async def test_learning_adds_up_counts_per_message(store: Store) -> None:
    assert await learn(store, ["a b c", "a b c", "a b d"]) == [True, True, True]
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    assert await store.markov.next_words(chain_id, "a b") == [("c", 2), ("d", 1)]
    assert await store.markov.next_words(chain_id, f"{BEGIN} {BEGIN}") == [("a", 3)]
    assert await store.markov.next_words(chain_id, "b c") == [(END, 2)]
    assert await store.markov.message_count(chain_id) == 3
    assert await store.markov.has_digest(chain_id, digest("A  B c"))
    assert not await store.markov.has_digest(chain_id, digest("a b e"))


async def test_repeated_transitions_within_one_message_are_counted(store: Store) -> None:
    await learn(store, ["x y x y x y"])
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    assert sorted(await store.markov.next_words(chain_id, "x y")) == sorted([("x", 2), (END, 1)])
    assert await store.markov.next_words(chain_id, "y x") == [("y", 2)]
    assert sorted(await store.markov.states_with_head(chain_id, "x", 10)) == ["x y"]


async def test_single_words_are_not_learned(store: Store) -> None:
    assert await learn(store, ["lol", "   ", "<@123> ok"]) == [False, False, False]
    chain = await store.markov.find_chain(AGENT, GUILD)
    assert chain is None or await store.markov.message_count(chain.id) == 0
    assert await generator(store).generate(AGENT, GUILD, "lol", random.Random(1)) is None


async def test_generate_is_seeded_by_a_word_of_the_message(store: Store) -> None:
    await learn(store, CHAT)
    gen = generator(store)
    sources = {normalise(text) for text in CHAT}
    for seed in range(15):
        text = await gen.generate(AGENT, GUILD, "who likes CHEESE?", random.Random(seed))
        assert text is not None
        assert "cheese" in text.split()
        assert normalise(text) not in sources


async def test_generate_never_returns_a_source_message(store: Store) -> None:
    await learn(store, CHAT)
    gen = generator(store)
    sources = {normalise(text) for text in CHAT}
    outputs = set()
    for seed in range(100):
        text = await gen.generate(AGENT, GUILD, "tonight", random.Random(seed))
        if text is not None:
            assert normalise(text) not in sources
            assert len(text.split()) >= 2
            outputs.add(text)
    assert len(outputs) > 3


async def test_a_one_message_chain_never_repeats_it(store: Store) -> None:
    await learn(store, ["hello there my good friend"])
    gen = generator(store)
    for seed in range(10):
        assert await gen.generate(AGENT, GUILD, "hello", random.Random(seed)) is None
        assert await gen.generate(AGENT, GUILD, "unrelated words", random.Random(seed)) is None
        fragment = await gen.generate(AGENT, GUILD, "my friend", random.Random(seed))
        assert fragment is None or normalise(fragment) != "hello there my good friend"


async def test_a_two_message_chain_never_repeats_either(store: Store) -> None:
    texts = ["we should go fishing", "we should sleep now"]
    await learn(store, texts)
    gen = generator(store)
    seen = set()
    for seed in range(30):
        text = await gen.generate(AGENT, GUILD, "maybe we", random.Random(seed))
        assert text is None or normalise(text) not in texts
        seen.add(text)
    # Both walks through the shared "we should" are sources, so there is nothing new to say.
    assert seen == {None}


async def test_what_tokenising_changed_is_still_a_source(store: Store) -> None:
    # The mention is not learned, so the chain holds "ping look at this": still a source.
    await learn(store, ["ping <@42> look at this"])
    gen = generator(store)
    for seed in range(10):
        assert await gen.generate(AGENT, GUILD, "ping", random.Random(seed)) is None


async def test_chains_of_two_guilds_are_separate(store: Store) -> None:
    await learn(store, CHAT, guild=GUILD)
    await learn(store, ["cats are the best pets", "dogs are the best friends"], guild=OTHER_GUILD)
    gen = generator(store)
    first = await store.markov.chain_id(AGENT, GUILD, 2)
    second = await store.markov.chain_id(AGENT, OTHER_GUILD, 2)
    assert first != second
    assert await store.markov.next_words(second, "best pizza") == []
    assert await store.markov.message_count(second) == 2
    for seed in range(10):
        text = await gen.generate(AGENT, OTHER_GUILD, "pizza cheese", random.Random(seed))
        assert text is None or not {"pizza", "cheese"} & set(text.split())
    assert await gen.generate(AGENT, "never-seen", "pizza", random.Random(1)) is None


async def test_chain_persists_across_a_new_store(store: Store, database_url: str) -> None:
    await learn(store, CHAT)
    reopened = Store(create_engine(database_url))
    try:
        text = await generator(reopened).generate(AGENT, GUILD, "pizza", random.Random(3))
        assert text is not None and "pizza" in text.split()
        chain_id = await reopened.markov.chain_id(AGENT, GUILD, 2)
        assert await reopened.markov.message_count(chain_id) == len(CHAT)
    finally:
        await reopened.close()


async def test_an_existing_chain_keeps_its_state_size(store: Store) -> None:
    await learn(store, ["one two three four"])
    gen3 = generator(store, state_size=3)
    async with store.engine.begin() as conn:
        await gen3.learn_in(conn, AGENT, GUILD, "one two three five")
    chain = await store.markov.find_chain(AGENT, GUILD)
    assert chain is not None and chain.state_size == 2
    assert sorted(await store.markov.next_words(chain.id, "two three")) == [
        ("five", 1),
        ("four", 1),
    ]


class Abort(Exception):
    """Raised inside a write transaction to roll it back."""


async def test_a_rolled_back_chain_creation_leaves_no_stale_id(store: Store) -> None:
    gen = generator(store)
    with pytest.raises(Abort):
        async with store.engine.begin() as conn:
            assert await gen.learn_in(conn, AGENT, GUILD, "this will be rolled back")
            raise Abort
    assert await store.markov.find_chain(AGENT, GUILD) is None
    assert await learn(store, ["this one is kept"]) == [True]
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    assert await store.markov.message_count(chain_id) == 1
    assert await store.markov.next_words(chain_id, "will be") == []


async def test_a_chain_made_twice_in_one_rolled_back_transaction_is_not_kept(
    store: Store,
) -> None:
    gen = generator(store)
    with pytest.raises(Abort):
        async with store.engine.begin() as conn:
            assert await gen.learn_in(conn, AGENT, GUILD, "first message in the batch")
            assert await gen.learn_in(conn, AGENT, GUILD, "second message in the batch")
            raise Abort
    assert await store.markov.find_chain(AGENT, GUILD) is None
    assert await learn(store, ["after the rollback"]) == [True]
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    assert await store.markov.message_count(chain_id) == 1


async def test_learning_works_without_aiosqlite_one_trip_helper(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(markov_store, "_one_trip", lambda driver: None)
    await learn(store, ["a b c", "a b c", "a b d"])
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    assert sorted(await store.markov.next_words(chain_id, "a b")) == [("c", 2), ("d", 1)]
    assert await store.markov.message_count(chain_id) == 3
    assert await store.markov.has_digest(chain_id, digest("a b d"))


async def test_clear_can_change_the_state_size(store: Store) -> None:
    await learn(store, CHAT)
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    await store.markov.clear(chain_id, state_size=3)
    await learn(store, ["one two three four"])
    chain = await store.markov.find_chain(AGENT, GUILD)
    assert chain is not None and (chain.id, chain.state_size) == (chain_id, 3)
    assert await store.markov.next_words(chain_id, "one two three") == [("four", 1)]


async def test_learn_many_matches_learning_one_by_one(store: Store) -> None:
    await learn(store, CHAT, guild=GUILD)
    progress: list[tuple[int, int]] = []
    result = await generator(store).learn_many(
        AGENT,
        OTHER_GUILD,
        [*CHAT, "short", ""],
        batch_size=4,
        on_progress=lambda learned, skipped: progress.append((learned, skipped)),
    )
    assert (result.learned, result.skipped) == (len(CHAT), 2)
    assert progress == [(4, 0), (2, 2)]
    one = await store.markov.chain_id(AGENT, GUILD, 2)
    bulk = await store.markov.chain_id(AGENT, OTHER_GUILD, 2)
    for state in (f"{BEGIN} {BEGIN}", "extra cheese", "pizza tonight", f"{BEGIN} a"):
        expected = await store.markov.next_words(one, state)
        assert expected and await store.markov.next_words(bulk, state) == expected
    assert await store.markov.message_count(bulk) == len(CHAT)
    assert all([await store.markov.has_digest(bulk, digest(text)) for text in CHAT])


async def test_learn_bulk_aggregates_duplicates_within_a_batch(store: Store) -> None:
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    row = ("p", "p q", "r")
    await store.markov.learn_bulk(chain_id, [LearnBatch([row, row, row], [7, 7], 2)])
    await store.markov.learn_bulk(chain_id, [LearnBatch([row], [7, 8], 1)])
    assert await store.markov.next_words(chain_id, "p q") == [("r", 4)]
    assert await store.markov.message_count(chain_id) == 3
    assert await store.markov.has_digest(chain_id, 8)


async def test_long_tailed_states_are_sampled_beyond_their_most_frequent_words(
    store: Store,
) -> None:
    # "folks need" is followed by 150 different words, 20 of them often; "need wNNN" goes on
    # to "now" or more often "badly", so "folks need wNNN badly" is new text.
    texts = [f"folks need w{i:03d} now" for i in range(150)]
    texts += [f"folks need w{i:03d} now" for i in range(20) for _ in range(3)]
    texts += [f"they need w{i:03d} badly" for i in range(150) for _ in range(3)]
    await generator(store).learn_many(AGENT, GUILD, texts)
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    async with store.markov.reader(chain_id) as reader:
        total, distinct, top = await reader.top_next_words("folks need", 64)
    assert (total, distinct, len(top)) == (210, 150, 64)
    assert top[0] == ("w000", 4) and top[19] == ("w019", 4) and top[20][1] == 1

    gen = generator(store)
    picked = []
    for seed in range(200):
        text = await gen.generate(AGENT, GUILD, "what do folks need?", random.Random(seed))
        assert text is not None and text.startswith("folks need w")
        picked.append(text.split()[2])
    frequent = {f"w{i:03d}" for i in range(20)}
    head = {word for word, _ in top}
    # The 20 frequent words carry 80 of 210 counts (38%); the tail beyond the 64 read
    # whole carries 86 (41%).  Both must show up in about those shares.
    assert 0.2 < sum(word in frequent for word in picked) / len(picked) < 0.6
    assert 0.2 < sum(word not in head for word in picked) / len(picked) < 0.6


async def test_clear_forgets_the_chain(store: Store) -> None:
    await learn(store, CHAT)
    chain_id = await store.markov.chain_id(AGENT, GUILD, 2)
    await store.markov.clear(chain_id)
    assert await store.markov.message_count(chain_id) == 0
    assert await store.markov.next_words(chain_id, "extra cheese") == []
    assert not await store.markov.has_digest(chain_id, digest(CHAT[0]))
    assert await generator(store).generate(AGENT, GUILD, "pizza", random.Random(1)) is None
    await learn(store, ["fresh start after clear"])
    assert await store.markov.message_count(chain_id) == 1
