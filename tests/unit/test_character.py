"""Character files: the shipped fish, ElizaOS import, round trips and clear errors."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carrier.persona.character import (
    Character,
    CharacterError,
    ExampleMessage,
    StyleGuide,
    character_to_eliza,
    character_to_yaml,
    dump_character,
    load_character,
    parse_character,
    read_character,
)

ROOT = Path(__file__).resolve().parents[2]
FISH = ROOT / "characters" / "fish.yaml"
ELIZA = ROOT / "characters" / "eliza-example.json"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- the shipped fish ---------------------------------------------------------------------------


def test_fish_is_a_carrier_character_with_the_required_persona() -> None:
    loaded = read_character(FISH)
    fish = loaded.character

    assert loaded.format == "carrier"
    assert fish.name == "Finnegan"
    assert "fish" in fish.nicknames
    assert {"curious", "cautious", "a fish"} <= set(fish.traits)
    assert any("land" in item and "Discord" in item for item in fish.lore)
    facts = " ".join(fish.facts)
    assert "five-star restaurant" in facts
    assert re.search(r"Fred.*eaten by a shark.*properly cooked and served", facts)
    assert fish.topics and fish.style.all and fish.style.chat and fish.style.post
    assert len(fish.message_examples) >= 6
    assert all(len(conversation) >= 2 for conversation in fish.message_examples)
    assert len(fish.post_examples) >= 6


def test_fish_gives_the_markov_fallback_30_sentences_in_its_own_voice() -> None:
    fish = load_character(FISH)
    own_lines = [
        line.text
        for conversation in fish.message_examples
        for line in conversation
        if line.user == fish.name
    ]
    texts = [*fish.lore, *fish.facts, *fish.bio, *own_lines, *fish.post_examples]
    sentences = [s for text in texts for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]

    assert len(sentences) >= 30
    assert len(set(sentences)) == len(sentences), "sentences should not repeat"
    assert len(own_lines) >= 10


# --- ElizaOS ------------------------------------------------------------------------------------


def test_eliza_example_maps_fields_and_ignores_runtime_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="carrier.persona.character"):
        loaded = read_character(ELIZA)
    marlowe = loaded.character

    assert loaded.format == "eliza"
    assert set(loaded.ignored_keys) == {
        "clients",
        "id",
        "modelProvider",
        "plugins",
        "settings",
        "system",
        "templates",
    }
    assert "modelProvider" in caplog.text and str(ELIZA) in caplog.text
    assert marlowe.name == "Marlowe"
    assert marlowe.nicknames == ["lighthouse_marlowe"]  # from "username"
    assert marlowe.bio == [
        "Marlowe kept the Gull Point lighthouse for forty years and now keeps a small tea shop "
        "in the harbour town."
    ]  # a single string becomes one item
    assert marlowe.traits == ["weathered", "kind", "stubborn", "nostalgic"]
    # knowledge strings become facts; the file reference is skipped
    assert marlowe.facts == [
        "The Gull Point lighthouse was automated in 1998.",
        "Marlowe brews his tea with a pinch of sea salt.",
    ]
    assert marlowe.style.chat == ["answers questions with a short story"]
    # the action-only reply is dropped, the ElizaOS 1.x "name" speaker is read
    assert marlowe.message_examples[1] == [
        ExampleMessage(user="{{user1}}", text="Go away, old man.")
    ]
    assert marlowe.message_examples[2][1].user == "Marlowe"
    assert len(marlowe.post_examples) == 2


def test_eliza_string_lore_and_style_are_accepted() -> None:
    text = json.dumps(
        {
            "name": "Pip",
            "lore": "Pip was born in a teapot.",
            "adjectives": ["small"],
            "style": {"all": "whispers", "extra": 1},
        }
    )
    pip = parse_character(text, "pip.json").character

    assert pip.lore == ["Pip was born in a teapot."]
    assert pip.style.all == ["whispers"]


def test_json_without_eliza_markers_is_still_read_as_eliza() -> None:
    loaded = parse_character('{"name": "Pip", "bio": "A small thing."}', "pip.json")

    assert loaded.format == "eliza"
    assert loaded.character.bio == ["A small thing."]


def test_carrier_keys_win_so_a_mixed_file_names_the_foreign_key() -> None:
    with pytest.raises(CharacterError) as caught:
        parse_character("name: Fin\ntraits: [curious]\nadjectives: [shy]\n", "mixed.yaml")

    assert "mixed.yaml: unknown key 'adjectives'" in str(caught.value)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [FISH, ELIZA], ids=["fish", "eliza"])
@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_dump_then_load_gives_the_same_character(source: Path, suffix: str, tmp_path: Path) -> None:
    original = load_character(source)
    target = tmp_path / f"out{suffix}"

    dump_character(original, target)

    assert load_character(target) == original
    assert read_character(target).format == ("eliza" if suffix == ".json" else "carrier")


def test_json_export_is_elizaos_shaped() -> None:
    fish = load_character(FISH)
    data = character_to_eliza(fish)

    assert data["adjectives"] == fish.traits
    assert data["knowledge"] == fish.facts
    assert data["username"] == "fish"
    first = data["messageExamples"][0][0]
    assert first["user"] == first["name"] == "{{user1}}"
    assert first["content"] == {"text": fish.message_examples[0][0].text}
    assert {"clients", "modelProvider", "traits", "facts"}.isdisjoint(data)


def test_dump_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = _write(tmp_path, "fish.yaml", "old content")

    dump_character(Character(name="Fin", traits=["wet"]), target)

    assert load_character(target) == Character(name="Fin", traits=["wet"])
    assert [p.name for p in tmp_path.iterdir()] == ["fish.yaml"]


def test_dump_to_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CharacterError, match=r"out\.txt: unknown format; name the file \.yaml"):
        dump_character(Character(name="Fin"), tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


_texts = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)  # any UTF-8 text
_lists = st.lists(_texts, max_size=4)
_characters = st.builds(
    Character,
    name=_texts,
    nicknames=_lists,
    bio=_lists,
    traits=_lists,
    lore=_lists,
    facts=_lists,
    topics=_lists,
    style=st.builds(StyleGuide, all=_lists, chat=_lists, post=_lists),
    message_examples=st.lists(
        st.lists(st.builds(ExampleMessage, user=_texts, text=_texts), min_size=1, max_size=3),
        max_size=3,
    ),
    post_examples=_lists,
)


@settings(max_examples=150, deadline=None)
@given(_characters)
def test_any_character_survives_both_formats(character: Character) -> None:
    as_yaml = parse_character(character_to_yaml(character), "c.yaml")
    as_json = parse_character(json.dumps(character_to_eliza(character)), "c.json")

    assert (as_yaml.format, as_yaml.character) == ("carrier", character)
    assert (as_json.format, as_json.character) == ("eliza", character)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("noname.yaml", "traits: [curious]\n", "noname.yaml: name: missing; expected a non-empty"),
        ("blank.yaml", "name: '  '\n", "blank.yaml: name: expected a non-empty string"),
        (
            "x.yaml",
            "name: Fin\ntraits: [curious, cautious, 5]\n",
            "x.yaml: traits.2: expected a string, got 5 (put it in quotes",
        ),
        (
            "yes.yaml",
            "name: Fin\ntraits:\n  - yes\n",
            "yes.yaml: traits.0: expected a string, got true",
        ),
        ("one.yaml", "name: Fin\nlore: just one\n", "one.yaml: lore: expected a list, got 'just"),
        (
            "typo.yaml",
            "name: Fin\ntraitz: [curious]\n",
            "typo.yaml: unknown key 'traitz' (allowed: bio, facts,",
        ),
        (
            "style.yaml",
            "name: Fin\nstyle: {all: [], chats: []}\n",
            "style.yaml: style: unknown key 'chats' (allowed: all, chat, post)",
        ),
        (
            "example.yaml",
            "name: Fin\nmessage_examples:\n  - - user: a\n      txt: hi\n",
            "example.yaml: message_examples.0.0: unknown key 'txt' (allowed: text, user)",
        ),
        (
            "empty-conv.yaml",
            "name: Fin\nmessage_examples: [[]]\n",
            "empty-conv.yaml: message_examples.0: expected at least one item",
        ),
        (
            "long.yaml",
            "name: " + "x" * 201 + "\n",
            "long.yaml: name: expected at most 200 characters, got 201",
        ),
        (
            "bad.yaml",
            "name: Fin\ntraits: [curious\nlore: []\n",
            "bad.yaml: invalid YAML at line 3",
        ),
        (
            "dup.yaml",
            "name: Fin\nlore: [a]\nlore: [b]\n",
            "dup.yaml: invalid YAML at line 3, column 1: the key 'lore' appears twice",
        ),
        ("empty.yaml", "# nothing here\n", "empty.yaml: is empty; expected a mapping"),
        ("list.yaml", "- name: Fin\n", "list.yaml: expected a mapping of fields at the top level"),
        (
            "bad.json",
            '{"name": "Fin", "bio": ["a",]}',
            "bad.json: invalid JSON at line 1, column 29",
        ),
        (
            "dup.json",
            '{"name": "Fin", "bio": [], "bio": ["b"]}',
            "dup.json: invalid JSON: the key 'bio' appears twice",
        ),
        (
            "eliza-type.json",
            '{"name": "Fin", "adjectives": ["shy", 7]}',
            "eliza-type.json: adjectives.1: expected a string, got 7",
        ),
        (
            "eliza-noname.json",
            '{"bio": "x", "clients": []}',
            "eliza-noname.json: name: missing",
        ),
        (
            "eliza-content.json",
            '{"name": "Fin", "messageExamples": [[{"user": "a", "text": "hi"}]]}',
            "eliza-content.json: messageExamples.0.0.content: missing; expected a mapping",
        ),
        (
            "eliza-speaker.json",
            '{"name": "Fin", "messageExamples": [[{"content": {"text": "hi"}}]]}',
            "eliza-speaker.json: messageExamples.0.0.user: missing; expected the speaker",
        ),
        (
            "eliza-style.json",
            '{"name": "Fin", "style": ["terse"]}',
            "eliza-style.json: style: expected a mapping, got a list",
        ),
    ],
)
def test_bad_character_files_name_file_field_and_expectation(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = _write(tmp_path, name, content)

    with pytest.raises(CharacterError) as caught:
        load_character(path)

    assert str(caught.value).startswith(str(tmp_path / ""))
    assert expected in str(caught.value)


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "many.yaml", "traits: [1]\nlore: [2]\n")

    with pytest.raises(CharacterError) as caught:
        load_character(path)

    assert len(caught.value.problems) == 3
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"name", "traits.0", "lore.0"}


def test_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin1.yaml", "name: Caf\xe9\n".encode("latin-1"))

    with pytest.raises(CharacterError, match=r"latin1\.yaml: is not UTF-8 text \(byte 0xe9"):
        load_character(path)


def test_utf8_with_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = _write(tmp_path, "bom.yaml", "\ufeffname: Café\n".encode())

    assert load_character(path).name == "Café"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CharacterError, match=r"nowhere\.yaml: no such file"):
        load_character(tmp_path / "nowhere.yaml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CharacterError, match="is a directory, not a character file"):
        load_character(tmp_path)
