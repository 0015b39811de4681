"""The whole pipeline on a real database: record, decide, assemble, generate, finish, learn."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.engine.pipeline import Engine
from carrier.engine.tone import TERSE_WORDS
from carrier.memory.short_term import MIN_TOKENS, TYPICAL_TOKENS, message_tokens
from carrier.persona.character import load_character
from carrier.persona.service import import_character, load_persona
from carrier.settings import Settings, load_settings
from carrier.store.schema import markov_chains
from carrier.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
BOT = "bot-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings_for(tmp_path: Path, **engine: object) -> Settings:
    config = tmp_path / "config.yaml"
    config.write_text("markov:\n  persona_weight: 1.0\n", encoding="utf-8")
    return load_settings(config, engine=engine or {})


@pytest.fixture
async def engine(store: Store, clock: Clock, tmp_path: Path) -> Engine:
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    return build_engine_for(settings_for(tmp_path), store, BOT, clock=clock, rng=random.Random(7))


_ids = itertools.count(1)


def message(clock: Clock, text: str, author: str = "alice", **kw: object) -> IncomingMessage:
    return IncomingMessage(
        channel_id="chan",
        guild_id="guild",
        message_id=f"m{next(_ids)}",
        author_id=f"u-{author}",
        author_name=author,
        text=text,
        created_at=clock(),
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_mention_gets_a_reply_that_is_logged(engine: Engine, clock: Clock) -> None:
    incoming = message(clock, "hello there, how is the water today?", mentions_bot=True)
    outcome = await engine.handle(incoming)
    assert outcome.decision.respond and outcome.decision.reason == "mention"
    assert outcome.reply is not None and outcome.reply.text.strip()
    assert outcome.reply.reply_to_message_id == incoming.message_id
    await engine.drain()  # the reply is logged in the background
    window = await engine.store.messages.recent("fish", "chan", clock() - timedelta(hours=1), 10)
    own = [m for m in window if m.is_self]
    assert len(own) == 1 and own[0].reply_to_author_id == "u-alice"
    assert own[0].text == outcome.reply.text
    assert set(outcome.timings_ms) >= {"record", "decide", "assemble", "generate", "finish"}


@pytest.mark.postgres
async def test_persona_and_relationship_edits_show_in_the_very_next_reply(
    engine: Engine, clock: Clock
) -> None:
    store = engine.store
    lore = [
        "Zorblax swims in purple water every night.",
        "Zorblax sings in purple caves every morning.",
        "Zorblax dreams in purple water every morning.",
    ]
    await store.persona.replace_all("fish", [("lore", line) for line in lore])
    outcome = await engine.handle(message(clock, "tell me about purple", mentions_bot=True))
    assert outcome.reply is not None and outcome.reply.source == "markov:persona"
    vocabulary = {w.strip(".").lower() for line in lore for w in line.split()}
    said = {w.strip(".,!?").lower() for w in outcome.reply.text.split()}
    assert said and said <= vocabulary, said - vocabulary

    await engine.parts.relationships.set("fish", "u-alice", clock(), anger=10.0)
    clock.advance(seconds=5)
    angry = await engine.handle(message(clock, "tell me about purple", mentions_bot=True))
    assert angry.reply is not None
    assert len(angry.reply.text.split()) <= TERSE_WORDS
    assert "terse (angry)" in angry.context["tone"]

    await engine.parts.relationships.set("fish", "u-alice", clock(), anger=0.0, formality=5.0)
    clock.advance(seconds=5)
    formal = await engine.handle(
        message(clock, "Could you tell me about purple?", mentions_bot=True)
    )
    assert formal.reply is not None and "formal" in formal.context["tone"]
    assert formal.reply.text[0].isupper() and formal.reply.text[-1] in ".?"


@pytest.mark.postgres
async def test_never_answers_the_same_message_twice(engine: Engine, clock: Clock) -> None:
    incoming = message(clock, "hi fish", mentions_bot=True)
    first = await engine.handle(incoming)
    again = await engine.handle(incoming)
    assert first.reply is not None
    assert again.reply is None and again.decision.reason == "duplicate"


async def test_own_and_other_bot_messages(engine: Engine, clock: Clock) -> None:
    own = await engine.handle(
        IncomingMessage(
            channel_id="chan",
            guild_id="guild",
            message_id="self-1",
            author_id=BOT,
            author_name="Fish",
            text="@everyone hi",
            created_at=clock(),
            mentions_bot=True,
        )
    )
    assert own.decision.reason == "own_message" and own.reply is None
    other = await engine.handle(
        message(clock, "ping fish", author="otherbot", author_is_bot=True, mentions_bot=True)
    )
    assert other.reply is None and other.decision.reason == "other_bot"
    async with engine.store.engine.connect() as conn:
        learned = await conn.scalar(
            markov_chains.select().with_only_columns(markov_chains.c.message_count)
        )
    assert not learned  # bot messages never train the chain


async def test_human_messages_train_the_guild_chain(engine: Engine, clock: Clock) -> None:
    for i in range(5):
        await engine.handle(message(clock, f"the tide comes in number {i} today", author="bob"))
    chain = await engine.store.markov.chain_id("fish", "guild", 2)
    assert await engine.store.markov.message_count(chain) == 5


async def test_bad_messages_are_handled_and_stored(engine: Engine, clock: Clock) -> None:
    empty = await engine.handle(message(clock, "", mentions_bot=True))
    blank = await engine.handle(message(clock, "   \n\t  ", mentions_bot=True))
    assert empty.reply is None and blank.reply is None
    assert blank.decision.reason == "empty_message"

    huge = await engine.handle(message(clock, "word " * 20_000, mentions_bot=True))
    assert huge.reply is not None and len(huge.reply.text) <= 2000

    invalid = b"hi fish \xff\xfe caf\xc3".decode("utf-8", "surrogateescape")
    broken = await engine.handle(message(clock, invalid, mentions_bot=True))
    assert broken.reply is not None
    broken.reply.text.encode("utf-8")

    mentions = " ".join(["@everyone @here <@&55> <@123>"] * 200)
    pinged = await engine.handle(message(clock, mentions + " fish", mentions_bot=True))
    assert pinged.reply is not None
    assert "@everyone" not in pinged.reply.text and "<@&" not in pinged.reply.text

    stored = await engine.store.messages.recent("fish", "chan", clock() - timedelta(hours=1), 50)
    assert any(len(m.text) >= 4000 for m in stored)  # the long one is kept (truncated)


async def test_rate_limited_user_is_told_once_then_ignored_but_recorded(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    settings = load_settings(None, rate_limits={"per_user": "2/minute", "global": "100/minute"})
    engine = build_engine_for(settings, store, BOT, clock=clock, rng=random.Random(3))
    results = [
        await engine.handle(message(clock, f"fish {i}?", mentions_bot=True)) for i in range(5)
    ]
    reasons = [r.decision.reason for r in results]
    assert reasons[:2] == ["mention", "mention"]
    assert reasons[2] == "rate_limited_notice" and results[2].reply is not None
    assert reasons[3:] == ["rate_limited", "rate_limited"]
    assert all(r.reply is None for r in results[3:])
    user = await store.users.get("fish", "u-alice")
    assert user is not None and user.message_count == 5


async def test_edit_and_delete_reach_the_log(engine: Engine, clock: Clock) -> None:
    first = message(clock, "my secret is tuna")
    await engine.handle(first)
    assert await engine.message_edited("chan", first.message_id, "my secret is salmon")
    window = await engine.parts.short_term.window("fish", "chan", clock(), 1000)
    assert [m.text for m in window] == ["my secret is salmon"]
    assert await engine.message_deleted("chan", first.message_id)
    assert await engine.parts.short_term.window("fish", "chan", clock(), 1000) == []


async def test_context_window_is_token_budgeted_newest_first(engine: Engine, clock: Clock) -> None:
    for i in range(50):
        await engine.handle(message(clock, f"message number {i} " + "x" * 40, author="bob"))
        clock.advance(seconds=1)
    window = await engine.parts.short_term.window("fish", "chan", clock(), 200)
    assert 0 < len(window) < 50
    assert window[-1].text.startswith("message number 49")
    numbers = [int(m.text.split()[2]) for m in window]
    assert numbers == sorted(numbers)
    clock.advance(hours=25)
    assert await engine.parts.short_term.window("fish", "chan", clock(), 10_000) == []


async def test_a_window_of_short_lines_reads_only_what_the_budget_can_hold(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        await engine.handle(message(clock, f"hi {i}", author="bob"))
        clock.advance(seconds=1)
    short_term = engine.parts.short_term
    everything = await short_term.recent("fish", "chan", clock() - timedelta(hours=24), 1000)
    expected, spent = [], 0
    for logged in everything:  # newest first, until the next line would not fit
        if spent + message_tokens(logged) > 1500:
            break
        spent += message_tokens(logged)
        expected.append(logged.message_id)
    limits: list[int] = []
    recent = short_term.recent

    async def counted(*args: object, **kwargs: object) -> object:
        limits.append(int(args[3]))  # type: ignore[call-overload]
        return await recent(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(short_term, "recent", counted)
    window = await short_term.window("fish", "chan", clock(), 1500)
    assert [m.message_id for m in window] == expected[::-1]
    first = 1500 // TYPICAL_TOKENS + 1
    left = 1500 - sum(message_tokens(m) for m in everything[:first])
    # The second page holds what is left of the budget, not a whole budget's worth of lines.
    assert limits == [first, left // MIN_TOKENS + 1]
    assert limits[1] < (1500 // MIN_TOKENS + 1) // 2


async def test_mood_rolls_once_a_day(engine: Engine, clock: Clock) -> None:
    first = await engine.parts.mood.current("fish", clock())
    same = await engine.parts.mood.current("fish", clock())
    assert first == same
    stored = await engine.store.state.all("fish", prefix="daily_mood_")
    assert stored["daily_mood_date"] == "2026-11-21"
    assert {"daily_mood_anger", "daily_mood_happiness"} <= set(stored)
    clock.advance(days=1)
    tomorrow = await engine.parts.mood.current("fish", clock())
    assert tomorrow.day == "2026-11-22"


async def test_emotes_of_the_guild_are_used(engine: Engine, clock: Clock) -> None:
    await engine.store.emotes.replace("fish", "guild", {"blobfish": "<:blobfish:99>"})
    assert (
        engine.finish("hello :blobfish: :unknown:", {"blobfish": "<:blobfish:99>"})
        == "hello <:blobfish:99>"
    )
    persona = await load_persona(engine.store, "fish")
    assert persona.name


@pytest.mark.postgres
async def test_the_next_message_sees_the_reply_without_waiting(
    engine: Engine, clock: Clock
) -> None:
    first = await engine.handle(message(clock, "hello fish", mentions_bot=True))
    assert first.reply is not None
    follow_up = await engine.handle(message(clock, "what do you mean by that?"))
    assert follow_up.decision.reason == "question_after_bot"
    await engine.drain()
    answered = await engine.store.messages.recent("fish", "chan", clock() - timedelta(hours=1), 10)
    originals = [m for m in answered if m.message_id == first.message.message_id]
    assert originals and originals[0].answered_reason == "mention"
