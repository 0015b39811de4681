"""The live persona: what the engine reads, and moving it between files and the database.

The database is the truth once a persona is imported.  :func:`load_persona` reads it at the
moment it is called (no cache), so an item added, edited or removed while the bot runs shows
in its very next reply.

How a :class:`~carrier.persona.character.Character` is stored, one ``persona_items`` row per
item (the agent's name lives in ``agents.name``):

================= =========================================================================
kind              text
================= =========================================================================
nickname          one nickname
trait             one trait
lore              one lore item
fact              one fact or quirk
bio               one bio line
topic             one topic
style             ``all: <line>``, ``chat: <line>`` or ``post: <line>``; a line added live
                  without a scope prefix applies everywhere (``all``)
example           one conversation as JSON: ``[{"user": "...", "text": "..."}, ...]``
post_example      one post
================= =========================================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from carrier.persona.character import (
    Character,
    Conversation,
    ExampleMessage,
    StyleGuide,
    load_character,
)
from carrier.store.persona import PERSONA_KINDS, PersonaItem, check_item
from carrier.store.store import Store

log = logging.getLogger(__name__)

STYLE_SCOPES = ("all", "chat", "post")
# Speakers that stand for the character itself in example conversations (ElizaOS habits).
_SELF_PLACEHOLDERS = frozenset({"{{agentname}}", "{{agent}}", "{{char}}", "{{bot}}"})
_CONVERSATION = TypeAdapter(Conversation)


@dataclass(frozen=True, slots=True)
class Style:
    """How the persona writes: everywhere, in chat replies, in posts."""

    all: tuple[str, ...] = ()
    chat: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Persona:
    """The persona as stored right now.  Build it with :func:`load_persona`."""

    name: str
    nicknames: tuple[str, ...] = ()
    traits: tuple[str, ...] = ()
    lore: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    bio: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    style: Style = field(default_factory=Style)
    message_examples: tuple[tuple[ExampleMessage, ...], ...] = ()
    post_examples: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The name and every nickname: what people call the bot."""
        return (self.name, *self.nicknames)

    @property
    def is_empty(self) -> bool:
        """True when nothing but the name is known (no persona imported yet)."""
        return not any(
            (
                self.nicknames,
                self.traits,
                self.lore,
                self.facts,
                self.bio,
                self.topics,
                self.style.all,
                self.style.chat,
                self.style.post,
                self.message_examples,
                self.post_examples,
            )
        )

    def is_self(self, speaker: str) -> bool:
        """Whether ``speaker`` in an example conversation is the character itself."""
        spoken = speaker.strip().casefold()
        return spoken in _SELF_PLACEHOLDERS or spoken in {n.casefold() for n in self.names}

    def texts(self) -> list[str]:
        """Every sentence-like text the persona owns, for the Markov fallback.

        Lore, facts & quirks, bio, the character's own lines in the example conversations
        and the post examples, in that order.  Traits and topics are single words and left
        out; so are the lines the example conversations give to other people.
        """
        own_lines = [
            line.text
            for conversation in self.message_examples
            for line in conversation
            if self.is_self(line.user)
        ]
        return [*self.lore, *self.facts, *self.bio, *own_lines, *self.post_examples]


# --- encoding items ---------------------------------------------------------------------------


def encode_style(scope: str, text: str) -> str:
    if scope not in STYLE_SCOPES:
        raise ValueError(
            f"unknown style scope {scope!r}; expected one of {', '.join(STYLE_SCOPES)}"
        )
    return f"{scope}: {text.strip()}"


def decode_style(text: str) -> tuple[str, str]:
    """``(scope, line)`` from a style item; text without a scope prefix applies to ``all``."""
    scope, separator, rest = text.partition(":")
    if separator and scope.strip() in STYLE_SCOPES and rest.strip():
        return scope.strip(), rest.strip()
    return "all", text.strip()


def encode_example(conversation: Iterable[ExampleMessage]) -> str:
    return json.dumps(
        [{"user": line.user, "text": line.text} for line in conversation], ensure_ascii=False
    )


def decode_example(text: str) -> tuple[ExampleMessage, ...] | None:
    """The conversation stored in an ``example`` item, or ``None`` if it is not one."""
    try:
        return tuple(_CONVERSATION.validate_json(text))
    except ValidationError:
        return None


def character_items(character: Character) -> list[tuple[str, str]]:
    """The ``(kind, text)`` rows that store ``character`` (its name goes to the agent)."""
    items: list[tuple[str, str]] = []
    items += [("nickname", text) for text in character.nicknames]
    items += [("trait", text) for text in character.traits]
    items += [("lore", text) for text in character.lore]
    items += [("fact", text) for text in character.facts]
    items += [("bio", text) for text in character.bio]
    items += [("topic", text) for text in character.topics]
    for scope in STYLE_SCOPES:
        items += [("style", encode_style(scope, text)) for text in getattr(character.style, scope)]
    items += [("example", encode_example(conv)) for conv in character.message_examples]
    items += [("post_example", text) for text in character.post_examples]
    return items


def persona_from_items(name: str, items: Sequence[PersonaItem]) -> Persona:
    """Assemble a :class:`Persona` from stored rows (ordered by kind, then position)."""
    texts: dict[str, list[str]] = {kind: [] for kind in PERSONA_KINDS}
    style: dict[str, list[str]] = {scope: [] for scope in STYLE_SCOPES}
    examples: list[tuple[ExampleMessage, ...]] = []
    for item in items:
        if item.kind == "style":
            scope, line = decode_style(item.text)
            style[scope].append(line)
        elif item.kind == "example":
            conversation = decode_example(item.text)
            if conversation is None:
                log.warning(
                    "persona item #%d is not an example conversation (a JSON list of "
                    '{"user", "text"} messages); skipping it',
                    item.id,
                )
            else:
                examples.append(conversation)
        elif item.kind in texts:
            texts[item.kind].append(item.text)
    return Persona(
        name=name,
        nicknames=tuple(texts["nickname"]),
        traits=tuple(texts["trait"]),
        lore=tuple(texts["lore"]),
        facts=tuple(texts["fact"]),
        bio=tuple(texts["bio"]),
        topics=tuple(texts["topic"]),
        style=Style(all=tuple(style["all"]), chat=tuple(style["chat"]), post=tuple(style["post"])),
        message_examples=tuple(examples),
        post_examples=tuple(texts["post_example"]),
    )


def persona_to_character(persona: Persona) -> Character:
    return Character(
        name=persona.name,
        nicknames=list(persona.nicknames),
        bio=list(persona.bio),
        traits=list(persona.traits),
        lore=list(persona.lore),
        facts=list(persona.facts),
        topics=list(persona.topics),
        style=StyleGuide(
            all=list(persona.style.all),
            chat=list(persona.style.chat),
            post=list(persona.style.post),
        ),
        message_examples=[list(conversation) for conversation in persona.message_examples],
        post_examples=list(persona.post_examples),
    )


# --- the service ------------------------------------------------------------------------------


async def import_character(store: Store, agent_id: str, character: Character) -> int:
    """Replace the agent's persona (and name) with ``character``; returns the item count.

    The name and all items change in one transaction: if anything fails, the previous
    persona is still there, complete.
    """
    await store.agents.ensure(agent_id, character.name)
    return await store.persona.replace_all(
        agent_id, character_items(character), name=character.name
    )


async def load_persona(store: Store, agent_id: str) -> Persona:
    """The persona as stored at this moment.

    An agent without items gets a persona with its name (or its id, if the agent is not
    known either) and nothing else.
    """
    name, items = await asyncio.gather(store.agents.name(agent_id), store.persona.items(agent_id))
    return persona_from_items(name or agent_id, items)


async def export_character(store: Store, agent_id: str) -> Character:
    """The stored persona as a character, ready for :func:`dump_character`."""
    return persona_to_character(await load_persona(store, agent_id))


async def ensure_persona(store: Store, agent_id: str, character_file: Path) -> bool:
    """First start: import ``character_file`` if the agent has no persona items yet.

    Returns whether it imported.  Once a persona is stored the file is not read again (edits
    made live are kept); raises :class:`~carrier.persona.character.CharacterError` if the file
    has to be read and cannot be.
    """
    if await store.persona.count(agent_id) > 0:
        return False
    character = load_character(character_file)
    count = await import_character(store, agent_id, character)
    log.info("imported persona %s (%d items) from %s", character.name, count, character_file)
    return True


async def add_item(store: Store, agent_id: str, kind: str, text: str) -> PersonaItem:
    """Add one item live, in the form its kind is stored in.

    A style line may start with ``all:``, ``chat:`` or ``post:`` (default ``all``).  An
    example is either a JSON conversation (``[{"user": ..., "text": ...}, ...]``) or plain
    text, taken as one line spoken by the character.  Raises :class:`ValueError` with a
    message for the operator on bad input.
    """
    return await store.persona.add(agent_id, kind, await _normalise(store, agent_id, kind, text))


async def edit_item(store: Store, agent_id: str, item_id: int, text: str) -> PersonaItem | None:
    """Change one item's text live (normalised as in :func:`add_item`); ``None`` if missing."""
    current = next((i for i in await store.persona.items(agent_id) if i.id == item_id), None)
    if current is None:
        return None
    text = await _normalise(store, agent_id, current.kind, text)
    if not await store.persona.update(agent_id, item_id, text):
        return None
    return PersonaItem(current.id, current.kind, text, current.position)


async def _normalise(store: Store, agent_id: str, kind: str, text: str) -> str:
    check_item(kind, text)
    text = text.strip()
    if kind == "style":
        return encode_style(*decode_style(text))
    if kind == "example":
        conversation = decode_example(text)
        if conversation is not None:
            return encode_example(conversation)
        if text.startswith(("[", "{")):
            raise ValueError(
                'an example must be a JSON list of {"user": ..., "text": ...} messages, '
                "or plain text for one line spoken by the character"
            )
        name = await store.agents.name(agent_id) or agent_id
        return encode_example([ExampleMessage(user=name, text=text)])
    return text
