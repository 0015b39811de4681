"""The live persona: one row per trait, lore item, fact, ... editable while the bot runs.

Items are plain text grouped by ``kind`` and ordered by ``position`` inside a kind.  What the
text of a kind means (a style line's scope prefix, an example conversation as JSON) is the
persona service's business, not this repository's: the store layer knows kinds and text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.schema import agents, persona_items

PERSONA_KINDS: tuple[str, ...] = (
    "nickname",
    "trait",
    "lore",
    "fact",
    "bio",
    "topic",
    "style",
    "example",
    "post_example",
)
"""Every kind the schema allows, in the order items are listed."""

_KIND_ORDER = case(
    {kind: index for index, kind in enumerate(PERSONA_KINDS)}, value=persona_items.c.kind
)


@dataclass(frozen=True, slots=True)
class PersonaItem:
    id: int
    kind: str
    text: str
    position: int


def check_item(kind: str, text: str) -> None:
    """Raise :class:`ValueError` unless ``kind`` is a persona kind and ``text`` is not blank."""
    if kind not in PERSONA_KINDS:
        raise ValueError(
            f"unknown persona kind {kind!r}; expected one of: {', '.join(PERSONA_KINDS)}"
        )
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a {kind} needs some text; got {text!r}")


class PersonaRepository:
    """Persona items per agent.  Every call reads or writes the database right now."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def items(self, agent_id: str, kind: str | None = None) -> list[PersonaItem]:
        """The agent's items (of one ``kind`` if given), ordered by kind, then position."""
        query = select(
            persona_items.c.id, persona_items.c.kind, persona_items.c.text, persona_items.c.position
        ).where(persona_items.c.agent_id == agent_id)
        if kind is not None:
            query = query.where(persona_items.c.kind == kind)
        query = query.order_by(_KIND_ORDER, persona_items.c.position, persona_items.c.id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [PersonaItem(row.id, row.kind, row.text, row.position) for row in rows]

    async def count(self, agent_id: str) -> int:
        async with self._engine.connect() as conn:
            total = await conn.scalar(
                select(func.count())
                .select_from(persona_items)
                .where(persona_items.c.agent_id == agent_id)
            )
            return int(total or 0)

    async def add(self, agent_id: str, kind: str, text: str) -> PersonaItem:
        """Append an item at the end of its kind.  Raises :class:`ValueError` on bad input."""
        check_item(kind, text)
        text = text.strip()
        async with self._engine.begin() as conn:
            await _lock_agent(conn, agent_id)
            last = await conn.scalar(
                select(func.max(persona_items.c.position)).where(
                    persona_items.c.agent_id == agent_id, persona_items.c.kind == kind
                )
            )
            position = 0 if last is None else int(last) + 1
            result = await conn.execute(
                persona_items.insert().values(
                    agent_id=agent_id,
                    kind=kind,
                    text=text,
                    position=position,
                    created_at=datetime.now(UTC),
                )
            )
            (item_id,) = result.inserted_primary_key or (None,)
        if item_id is None:  # pragma: no cover - both dialects return the new id
            raise RuntimeError("the database did not return the new persona item's id")
        return PersonaItem(int(item_id), kind, text, position)

    async def update(self, agent_id: str, item_id: int, text: str) -> bool:
        """Change an item's text; ``False`` if the agent has no such item."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a persona item needs some text; got {text!r}")
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(persona_items)
                .where(persona_items.c.agent_id == agent_id, persona_items.c.id == item_id)
                .values(text=text.strip())
            )
            return bool(result.rowcount)

    async def remove(self, agent_id: str, item_id: int) -> bool:
        """Delete an item; ``False`` if the agent has no such item."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(persona_items).where(
                    persona_items.c.agent_id == agent_id, persona_items.c.id == item_id
                )
            )
            return bool(result.rowcount)

    async def replace_all(
        self, agent_id: str, items: Sequence[tuple[str, str]], *, name: str | None = None
    ) -> int:
        """Replace the whole persona with ``items`` (kind, text) in one transaction.

        Positions follow the order of ``items`` within each kind.  ``name``, if given, renames
        the agent in the same transaction.  Input is checked before anything is touched
        (:class:`ValueError`); a database failure rolls everything back, so a failed import
        always leaves the previous persona in place.  Returns the number of items stored.
        """
        items = list(items)
        for kind, text in items:
            check_item(kind, text)
        now = datetime.now(UTC)
        positions: dict[str, int] = {}
        rows = []
        for kind, text in items:
            position = positions.get(kind, 0)
            positions[kind] = position + 1
            rows.append(
                {
                    "agent_id": agent_id,
                    "kind": kind,
                    "text": text.strip(),
                    "position": position,
                    "created_at": now,
                }
            )
        async with self._engine.begin() as conn:
            await _lock_agent(conn, agent_id, rename_to=name)
            await conn.execute(delete(persona_items).where(persona_items.c.agent_id == agent_id))
            if rows:
                await conn.execute(persona_items.insert(), rows)
        return len(rows)


async def _lock_agent(conn: AsyncConnection, agent_id: str, rename_to: str | None = None) -> None:
    """Write the agent's row first thing in a transaction (renaming it if asked).

    Writing first takes SQLite's write lock before any read, so the transaction never has to
    upgrade a read snapshot (which fails at once instead of waiting), and takes the row lock on
    PostgreSQL, so concurrent edits of one persona run one after the other: two first-start
    imports cannot both delete nothing and both insert, and appended items get distinct
    positions.  Raises :class:`ValueError` for an unknown agent.
    """
    new_name = agents.c.name if rename_to is None else rename_to
    result = await conn.execute(update(agents).where(agents.c.id == agent_id).values(name=new_name))
    if not result.rowcount:
        raise ValueError(f"unknown agent {agent_id!r}; create it before storing its persona")
