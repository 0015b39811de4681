"""The persona in the database: import, live edits read at once, atomic replacement."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from carrier.persona import service
from carrier.persona.character import Character, ExampleMessage, StyleGuide, load_character
from carrier.persona.service import (
    Persona,
    Style,
    add_item,
    edit_item,
    encode_example,
    ensure_persona,
    export_character,
    import_character,
    load_persona,
)
from carrier.store import persona as persona_store
from carrier.store.persona import PERSONA_KINDS, PersonaItem
from carrier.store.store import Store

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
FISH = ROOT / "characters" / "fish.yaml"
ELIZA = ROOT / "characters" / "eliza-example.json"


async def test_import_then_load_gives_the_whole_persona(store: Store) -> None:
    fish = load_character(FISH)

    count = await import_character(store, "fish", fish)
    persona = await load_persona(store, "fish")

    assert count == await store.persona.count("fish") == len(service.character_items(fish))
    assert await store.agents.name("fish") == "Finnegan"
    assert persona.name == "Finnegan"
    assert persona.nicknames == tuple(fish.nicknames)
    assert persona.traits == tuple(fish.traits)
    assert persona.lore == tuple(fish.lore)
    assert persona.facts == tuple(fish.facts)
    assert persona.bio == tuple(fish.bio)
    assert persona.topics == tuple(fish.topics)
    assert persona.style == Style(
        all=tuple(fish.style.all), chat=tuple(fish.style.chat), post=tuple(fish.style.post)
    )
    assert persona.message_examples == tuple(tuple(c) for c in fish.message_examples)
    assert persona.post_examples == tuple(fish.post_examples)


@pytest.mark.parametrize("source", [FISH, ELIZA], ids=["fish", "eliza"])
async def test_export_equals_what_was_imported(store: Store, source: Path) -> None:
    character = load_character(source)

    await import_character(store, "fish", character)

    assert await export_character(store, "fish") == character


async def test_items_are_stored_one_per_row_in_kind_and_file_order(store: Store) -> None:
    await import_character(
        store,
        "fish",
        Character(
            name="Fin",
            post_examples=["p1"],
            traits=["curious", "cautious"],
            nicknames=["fish"],
            style=StyleGuide(post=["terse"], all=["gentle"]),
        ),
    )

    items = await store.persona.items("fish")

    assert [(i.kind, i.text, i.position) for i in items] == [
        ("nickname", "fish", 0),
        ("trait", "curious", 0),
        ("trait", "cautious", 1),
        ("style", "all: gentle", 0),
        ("style", "post: terse", 1),
        ("post_example", "p1", 0),
    ]
    assert [i.text for i in await store.persona.items("fish", "trait")] == ["curious", "cautious"]


async def test_live_edits_show_in_the_next_read(store: Store) -> None:
    await import_character(store, "fish", load_character(FISH))

    added = await store.persona.add("fish", "fact", "  Collects bottle caps.  ")
    after_add = await load_persona(store, "fish")
    assert added.text == "Collects bottle caps."
    assert after_add.facts[-1] == "Collects bottle caps."
    assert added.position == len(after_add.facts) - 1

    assert await store.persona.update("fish", added.id, "Collects shiny bottle caps.")
    assert (await load_persona(store, "fish")).facts[-1] == "Collects shiny bottle caps."

    assert await store.persona.remove("fish", added.id)
    after_remove = await load_persona(store, "fish")
    assert "Collects shiny bottle caps." not in after_remove.facts
    assert after_remove.facts == tuple(load_character(FISH).facts)


async def test_update_and_remove_of_a_missing_item_report_false(store: Store) -> None:
    item = await store.persona.add("fish", "trait", "curious")

    assert not await store.persona.update("fish", item.id + 1000, "x")
    assert not await store.persona.remove("fish", item.id + 1000)
    await store.agents.ensure("other", "Other")
    assert not await store.persona.remove("other", item.id)  # another agent's item
    assert [i.text for i in await store.persona.items("fish")] == ["curious"]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("quirk", "x", "unknown persona kind 'quirk'; expected one of: nickname, trait"),
        ("trait", "   ", "a trait needs some text"),
    ],
)
async def test_add_rejects_bad_items(store: Store, kind: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        await store.persona.add("fish", kind, text)
    assert await store.persona.count("fish") == 0


async def test_update_rejects_blank_text(store: Store) -> None:
    item = await store.persona.add("fish", "lore", "Walked out of a river.")

    with pytest.raises(ValueError, match="needs some text"):
        await store.persona.update("fish", item.id, "")
    assert [i.text for i in await store.persona.items("fish")] == ["Walked out of a river."]


async def test_unknown_agent_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown agent 'ghost'"):
        await store.persona.add("ghost", "trait", "spooky")
    with pytest.raises(ValueError, match="unknown agent 'ghost'"):
        await store.persona.replace_all("ghost", [("trait", "spooky")])


async def test_invalid_item_in_replace_all_leaves_the_old_persona(store: Store) -> None:
    await import_character(store, "fish", load_character(FISH))
    before = await store.persona.items("fish")

    with pytest.raises(ValueError, match="unknown persona kind 'quirk'"):
        await store.persona.replace_all(
            "fish", [("trait", "new"), ("quirk", "bad"), ("lore", "new")], name="Changed"
        )

    assert await store.persona.items("fish") == before
    assert await store.agents.name("fish") == "Finnegan"


async def test_database_failure_mid_replace_rolls_everything_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await import_character(store, "fish", load_character(FISH))
    before = await store.persona.items("fish")
    # Let a bad kind through the up-front check so the database's CHECK constraint fails
    # after the old rows were already deleted inside the transaction.
    monkeypatch.setattr(persona_store, "check_item", lambda kind, text: None)

    with pytest.raises(IntegrityError):
        await store.persona.replace_all(
            "fish", [("trait", "new"), ("quirk", "bad"), ("lore", "new")], name="Changed"
        )

    assert await store.persona.items("fish") == before
    assert await store.agents.name("fish") == "Finnegan"


async def test_ensure_persona_imports_only_when_nothing_is_stored(
    store: Store, tmp_path: Path
) -> None:
    assert await ensure_persona(store, "fish", FISH) is True
    assert (await load_persona(store, "fish")).name == "Finnegan"
    live = await store.persona.add("fish", "trait", "brave today")

    # A second start, even with another file configured, keeps what is stored.
    assert await ensure_persona(store, "fish", ELIZA) is False
    assert await ensure_persona(store, "fish", tmp_path / "missing.yaml") is False

    persona = await load_persona(store, "fish")
    assert persona.name == "Finnegan"
    assert persona.traits[-1] == live.text
    assert (
        await store.persona.count("fish") == len(service.character_items(load_character(FISH))) + 1
    )


async def test_two_instances_starting_at_once_store_one_persona(store: Store) -> None:
    results = await asyncio.gather(*(ensure_persona(store, "fish", FISH) for _ in range(4)))

    assert True in results
    expected = service.character_items(load_character(FISH))
    items = await store.persona.items("fish")
    assert len(items) == len(expected)
    assert sorted((i.kind, i.position) for i in items) == sorted(
        {(i.kind, i.position) for i in items}
    )


async def test_ensure_persona_creates_a_new_agent(store: Store) -> None:
    assert await ensure_persona(store, "marlowe", ELIZA) is True

    assert await store.agents.name("marlowe") == "Marlowe"
    assert (await load_persona(store, "marlowe")).traits[0] == "weathered"
    assert await store.persona.count("fish") == 0  # agents do not share items


async def test_an_empty_persona_has_the_agents_name_and_nothing_else(store: Store) -> None:
    persona = await load_persona(store, "fish")

    assert persona == Persona(name="Fish")
    assert persona.is_empty
    assert persona.texts() == []
    assert (await load_persona(store, "unknown")).name == "unknown"


async def test_texts_are_the_characters_own_sentences(store: Store) -> None:
    await import_character(store, "fish", load_character(FISH))
    persona = await load_persona(store, "fish")

    texts = persona.texts()

    assert persona.lore[0] in texts and persona.facts[0] in texts and persona.bio[0] in texts
    assert persona.post_examples[-1] in texts
    assert any("five-star restaurant" in t for t in texts)
    assert "Have you ever been inside a real kitchen?" not in texts  # a user's line
    assert any(t.startswith("Once. I hid behind the parsley") for t in texts)  # the fish's
    assert "curious" not in texts  # traits are not sentences
    assert len(texts) >= 30


async def test_add_item_stores_each_kind_in_its_form(store: Store) -> None:
    await import_character(store, "fish", Character(name="Fin"))

    line = await add_item(store, "fish", "example", "Blub, said the fish.")
    conversation = await add_item(
        store,
        "fish",
        "example",
        '[{"user": "{{user1}}", "text": "hi"}, {"user": "Fin", "text": "hello"}]',
    )
    scoped = await add_item(store, "fish", "style", "chat: short replies")
    unscoped = await add_item(store, "fish", "style", "Note: gentle")

    assert line.text == encode_example([ExampleMessage(user="Fin", text="Blub, said the fish.")])
    assert unscoped.text == "all: Note: gentle"
    persona = await load_persona(store, "fish")
    assert persona.message_examples == (
        (ExampleMessage(user="Fin", text="Blub, said the fish."),),
        (ExampleMessage(user="{{user1}}", text="hi"), ExampleMessage(user="Fin", text="hello")),
    )
    assert persona.style == Style(all=("Note: gentle",), chat=("short replies",))
    assert persona.texts() == ["Blub, said the fish.", "hello"]
    assert scoped.kind == "style" and conversation.kind == "example"
    with pytest.raises(ValueError, match="an example must be a JSON list"):
        await add_item(store, "fish", "example", '[{"user": "Fin"}]')


async def test_edit_item_keeps_the_kinds_form(store: Store) -> None:
    await import_character(store, "fish", Character(name="Fin", style=StyleGuide(chat=["brief"])))
    (style,) = await store.persona.items("fish", "style")

    edited = await edit_item(store, "fish", style.id, "post: wistful")

    assert edited == PersonaItem(style.id, "style", "post: wistful", style.position)
    assert (await load_persona(store, "fish")).style == Style(post=("wistful",))
    assert await edit_item(store, "fish", style.id + 1000, "x") is None


async def test_a_broken_example_row_is_skipped_not_fatal(store: Store) -> None:
    await import_character(
        store,
        "fish",
        Character(name="Fin", message_examples=[[ExampleMessage(user="Fin", text="ok")]]),
    )
    await store.persona.add("fish", "example", "not a conversation")

    persona = await load_persona(store, "fish")

    assert persona.message_examples == ((ExampleMessage(user="Fin", text="ok"),),)


def test_every_schema_kind_is_known() -> None:
    from sqlalchemy import CheckConstraint

    from carrier.store.schema import persona_items

    (check,) = [
        c
        for c in persona_items.constraints
        if isinstance(c, CheckConstraint) and "kind IN" in str(c.sqltext)
    ]
    assert set(re.findall(r"'(\w+)'", str(check.sqltext))) == set(PERSONA_KINDS)
