"""With an LLM configured: facts extracted by the LLM (validated JSON) in consolidation, and
the LLM judging whether a new fact replaces an old one; the offline extractor and rule take
over when it fails.  The LLM is the scripted server over real HTTP, asked by the real SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carrier.bootstrap import build_llm, open_memory
from carrier.generation.llm.generator import LLMGenerator
from carrier.memory.api import Memory
from carrier.memory.llm_memory import (
    LLMContradictionJudge,
    LLMFactExtractor,
    parse_judgement,
)
from carrier.memory.vectors.base import VectorIndex
from carrier.metrics import Metrics
from carrier.settings import Settings, load_settings
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.testing import llm_server as fake
from carrier.testing.embeddings import HashingEmbedder

pytestmark = pytest.mark.postgres

DAY = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
Answers = Callable[[fake.RecordedRequest], fake.Behaviour]


def said(n: int, author: str, text: str, *, day: int = 0, guild: str = "g1") -> LoggedMessage:
    return LoggedMessage(
        agent_id="fish",
        guild_id=guild,
        channel_id="c1",
        message_id=f"m{day}-{n}",
        author_id=author.lower(),
        author_name=author,
        text=text,
        created_at=DAY + timedelta(days=day, minutes=n),
    )


class Script:
    """The LLM's side: facts for lines it recognises, and the judge's verdicts."""

    def __init__(self) -> None:
        self.facts: dict[str, list[dict[str, str]]] = {}
        self.replaces: dict[tuple[str, str], bool] = {}
        self.judged: list[tuple[str, str]] = []

    def __call__(self, request: fake.RecordedRequest) -> fake.Behaviour:
        content = request.messages[-1]["content"]
        if request.system.startswith("You keep"):
            old, new = (line.split(": ", 1)[1] for line in content.splitlines())
            self.judged.append((old, new))
            verdict = self.replaces.get((old, new), False)
            return fake.answer(json.dumps({"replaces": verdict}))
        found = [f for key, facts in self.facts.items() if key in content for f in facts]
        return fake.answer(json.dumps({"facts": found}))


@pytest.fixture
async def script() -> AsyncIterator[tuple[Script, fake.ScriptedLLMServer]]:
    answers = Script()
    async with fake.ScriptedLLMServer(default=answers) as server:
        yield answers, server


def llm_settings(server: fake.ScriptedLLMServer, tmp_path: Path, **extra: object) -> Settings:
    return load_settings(
        None,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"},
        llm={
            "providers": [
                {
                    "kind": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": server.openai_base_url,
                    "api_key_env": None,
                    "timeout_seconds": 5,
                }
            ],
            "circuit_failures": 100,
        },
        **extra,
    )


@pytest.fixture
async def llm(
    script: tuple[Script, fake.ScriptedLLMServer], store: Store, tmp_path: Path
) -> AsyncIterator[LLMGenerator]:
    generator = build_llm(llm_settings(script[1], tmp_path), store, Metrics())
    yield generator
    await generator.aclose()


@pytest.fixture
async def memory(
    store: Store, vector_index: VectorIndex, llm: LLMGenerator
) -> AsyncIterator[Memory]:
    opened = Memory(
        store,
        HashingEmbedder(),
        vector_index,
        agent_id="fish",
        extractor=LLMFactExtractor(llm, bot_name="Fish"),
        judge=LLMContradictionJudge(llm, bot_name="Fish"),
    )
    yield opened
    await opened.aclose()


async def consolidate(memory: Memory, *lines: LoggedMessage, day: int = 0) -> None:
    await memory.add_messages(lines)
    await memory.consolidate(now=DAY + timedelta(days=day, hours=23))


async def test_llm_facts_and_a_judged_move_keep_the_old_city_as_history(
    memory: Memory, script: tuple[Script, fake.ScriptedLLMServer]
) -> None:
    answers, server = script
    answers.facts["I live in Lisbon"] = [
        {"user": "Ana", "fact": "Ana lives in Lisbon", "category": "personal"},
    ]
    answers.facts["my cat Tom"] = [
        {"user": "ana", "fact": "Ana has a cat called Tom", "category": "personal"},
        # About someone who did not speak: never filed under anyone.
        {"user": "Zed", "fact": "Zed is a spy", "category": "personal"},
    ]
    await consolidate(
        memory, said(1, "Ana", "I live in Lisbon, by the river"), said(2, "Ana", "my cat Tom!")
    )
    first = await memory.store.facts.for_user("fish", "ana")
    assert sorted(f.fact for f in first) == ["Ana has a cat called Tom", "Ana lives in Lisbon"]
    assert all(f.guild_id == "g1" for f in first)
    request = next(r for r in server.requests if "Chat log" in r.messages[-1]["content"])
    assert "Ana: I live in Lisbon" in request.messages[-1]["content"]
    assert request.body["temperature"] == 0.0

    answers.facts["moved to Porto"] = [
        {"user": "Ana", "fact": "Ana lives in Porto", "category": "personal"},
    ]
    answers.replaces[("Ana lives in Lisbon", "Ana lives in Porto")] = True
    await consolidate(memory, said(1, "Ana", "I moved to Porto last week", day=1), day=1)

    # The judge saw the similar fact only (not the cat), and said it is replaced.
    assert answers.judged == [("Ana lives in Lisbon", "Ana lives in Porto")]
    current = await memory.store.facts.for_user("fish", "ana")
    assert sorted(f.fact for f in current) == ["Ana has a cat called Tom", "Ana lives in Porto"]
    everything = await memory.store.facts.for_user("fish", "ana", include_history=True)
    lisbon = next(f for f in everything if f.fact == "Ana lives in Lisbon")
    porto = next(f for f in everything if f.fact == "Ana lives in Porto")
    assert lisbon.superseded_by == porto.id  # kept as history, not deleted


async def test_deleting_the_message_an_llm_fact_came_from_retracts_it(
    memory: Memory, script: tuple[Script, fake.ScriptedLLMServer]
) -> None:
    answers, _server = script
    answers.facts["Porto"] = [
        {"user": "Ana", "fact": "Ana lives in Porto", "category": "personal"},
        {"user": "Ana", "fact": "Ana has a parrot called Kiwi", "category": "pets"},
        {"user": "Bo", "fact": "Bo works as a baker", "category": "job"},
    ]
    await consolidate(
        memory,
        said(1, "Ana", "hello everyone, I live in Porto now"),
        said(2, "Bo", "I work as a baker, early mornings"),
        said(3, "Ana", "my parrot Kiwi says hi"),
        said(4, "Ana", "anyway, back to work"),
    )
    sources = {
        f.fact: f.source_message_id
        for user in ("ana", "bo")
        for f in await memory.store.facts.for_user("fish", user)
    }
    assert sources == {
        "Ana lives in Porto": "m0-1",
        "Ana has a parrot called Kiwi": "m0-3",
        "Bo works as a baker": "m0-2",
    }
    assert await memory.retract("m0-3") == 1  # Ana deleted the parrot message
    assert [f.fact for f in await memory.store.facts.for_user("fish", "ana")] == [
        "Ana lives in Porto"
    ]
    assert await memory.retract("m0-4") == 0  # nothing was learned from it


async def test_the_judge_saying_no_keeps_both(
    memory: Memory, script: tuple[Script, fake.ScriptedLLMServer]
) -> None:
    answers, _server = script
    answers.facts["tennis"] = [{"user": "Bo", "fact": "Bo plays tennis", "category": "personal"}]
    answers.facts["squash"] = [
        {"user": "Bo", "fact": "Bo plays tennis and squash", "category": "personal"}
    ]
    await consolidate(memory, said(1, "Bo", "tennis every sunday"))
    await consolidate(memory, said(1, "Bo", "squash too now", day=1), day=1)
    assert answers.judged == [("Bo plays tennis", "Bo plays tennis and squash")]
    facts = await memory.store.facts.for_user("fish", "bo", include_history=True)
    assert all(f.superseded_by is None for f in facts) and len(facts) == 2


async def test_an_llm_that_fails_leaves_the_offline_extractor_and_rule(
    memory: Memory, script: tuple[Script, fake.ScriptedLLMServer]
) -> None:
    _answers, server = script
    server.script(fake.malformed_json(), fake.answer("sure! here are some facts"))
    await consolidate(memory, said(1, "Cy", "I live in Lisbon"))
    assert isinstance(memory.extractor, LLMFactExtractor) and memory.extractor.fallbacks == 1
    assert [f.fact for f in await memory.store.facts.for_user("fish", "cy")] == ["lives in Lisbon"]
    # Extraction: the server errors; the judge: also unusable -> the offline rule supersedes.
    server.script(fake.error(500), fake.answer("maybe?"))
    await consolidate(memory, said(1, "Cy", "I live in Porto", day=1), day=1)
    facts = await memory.store.facts.for_user("fish", "cy", include_history=True)
    assert {f.fact: f.superseded_by is not None for f in facts} == {
        "lives in Lisbon": True,
        "lives in Porto": False,
    }
    assert memory.extractor.fallbacks == 2


async def test_a_fact_added_through_the_api_is_judged_too(
    memory: Memory, script: tuple[Script, fake.ScriptedLLMServer]
) -> None:
    answers, _server = script
    answers.replaces[("works as a nurse", "works as a nurse practitioner now")] = False
    answers.replaces[("works as a nurse", "works as a baker")] = True
    first = await memory.add_fact("ana", "works as a nurse", "job")
    same = await memory.add_fact("ana", "works as a nurse practitioner now", "job")
    moved = await memory.add_fact("ana", "works as a baker", "job")
    assert same.outcome == "new" and moved.outcome == "superseded"
    assert moved.replaced == first.fact_id


def test_judge_answers_are_validated() -> None:
    assert parse_judgement('{"replaces": true}') is True
    assert parse_judgement('```json\n{"replaces": false}\n```') is False
    for bad in ('{"replaces": "yes"}', "true", "", "{}", '{"replaced": true}'):
        with pytest.raises(Exception, match="contradiction judge"):
            parse_judgement(bad)


async def test_open_memory_wires_the_llm_when_providers_are_configured(
    store: Store,
    script: tuple[Script, fake.ScriptedLLMServer],
    tmp_path: Path,
    minilm_cache: Path,
) -> None:
    settings = llm_settings(
        script[1],
        tmp_path,
        embeddings={"cache_dir": str(minilm_cache)},
        vectors={"backend": "pgvector" if store.dialect == "postgresql" else "sqlite"},
        memory={"fact_similarity_threshold": 0.9, "share_across_guilds": True},
    )
    settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": store.engine.url.render_as_string(hide_password=False)}
            )
        }
    )
    memory = await open_memory(settings, store)
    try:
        assert isinstance(memory.extractor, LLMFactExtractor)
        assert memory.long_term._threshold == 0.9
        await memory.add_fact("ana", "has a dog called Rex", "pets", guild_id="g1")
        # Sharing across guilds is configured: a fact of g1 is used in g2.
        assert [r.fact.fact for r in await memory.search_facts("ana", "pet", guild_id="g2")] == [
            "has a dog called Rex"
        ]
    finally:
        await memory.aclose()
    plain = await open_memory(
        load_settings(
            None, embeddings={"cache_dir": str(minilm_cache)}, vectors=settings.vectors.model_dump()
        ),
        store,
    )
    try:
        assert not isinstance(plain.extractor, LLMFactExtractor)
        assert plain.search_embedders() == [plain.embedder]
    finally:
        await plain.aclose()
