"""Users the bot has seen, with their nickname history."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.schema import user_nicknames, users
from carrier.store.upsert import insert


@dataclass(frozen=True, slots=True)
class Nickname:
    nickname: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Sighting:
    """A user seen in a message: what recording learns about them."""

    user_id: str
    name: str
    is_bot: bool
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    name: str
    is_bot: bool
    first_seen: datetime
    last_seen: datetime
    message_count: int


@functools.cache
def _upserts(dialect: str) -> tuple[Any, Any]:
    """Built once per dialect: the statements' cache keys then match every time."""
    stmt = insert(users, dialect)
    user_upsert = stmt.on_conflict_do_update(
        index_elements=["agent_id", "user_id"],
        set_={
            "name": stmt.excluded.name,
            "last_seen": stmt.excluded.last_seen,
            "message_count": users.c.message_count + stmt.excluded.message_count,
        },
    )
    nick = insert(user_nicknames, dialect)
    nickname_upsert = nick.on_conflict_do_update(
        index_elements=["agent_id", "user_id", "nickname"],
        set_={"last_seen": nick.excluded.last_seen},
    )
    return user_upsert, nickname_upsert


class UserRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def touch_in(
        self,
        conn: AsyncConnection,
        agent_id: str,
        user_id: str,
        name: str,
        is_bot: bool,
        seen_at: datetime,
    ) -> None:
        """Create or refresh a user and their nickname history in the caller's transaction."""
        await self.touch_many_in(conn, agent_id, [Sighting(user_id, name, is_bot, seen_at)])

    async def touch_many_in(
        self, conn: AsyncConnection, agent_id: str, sightings: Sequence[Sighting]
    ) -> None:
        """:meth:`touch_in` for many messages at once: two statements for the whole batch.

        Sightings of the same user are folded first (PostgreSQL refuses to update one row
        twice in a statement): the newest name wins, message counts add up.
        """
        if not sightings:
            return
        dialect = conn.dialect.name
        folded: dict[str, dict[str, object]] = {}
        nicks: dict[tuple[str, str], dict[str, object]] = {}
        for seen in sorted(sightings, key=lambda s: s.seen_at):
            row = folded.get(seen.user_id)
            if row is None:
                folded[seen.user_id] = {
                    "agent_id": agent_id,
                    "user_id": seen.user_id,
                    "name": seen.name,
                    "is_bot": seen.is_bot,
                    "first_seen": seen.seen_at,
                    "last_seen": seen.seen_at,
                    "message_count": 1,
                }
            else:
                count = row["message_count"]
                assert isinstance(count, int)
                row.update(name=seen.name, last_seen=seen.seen_at, message_count=count + 1)
            key = (seen.user_id, seen.name)
            if key in nicks:
                nicks[key]["last_seen"] = seen.seen_at
            else:
                nicks[key] = {
                    "agent_id": agent_id,
                    "user_id": seen.user_id,
                    "nickname": seen.name,
                    "first_seen": seen.seen_at,
                    "last_seen": seen.seen_at,
                }
        user_upsert, nickname_upsert = _upserts(dialect)
        await conn.execute(user_upsert, list(folded.values()))
        await conn.execute(nickname_upsert, list(nicks.values()))

    async def get(self, agent_id: str, user_id: str) -> User | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users).where(users.c.agent_id == agent_id, users.c.user_id == user_id)
                )
            ).first()
        if row is None:
            return None
        return User(
            row.user_id, row.name, row.is_bot, row.first_seen, row.last_seen, row.message_count
        )

    async def find(self, agent_id: str, name_or_id: str) -> User | None:
        """A user by id, current name or any past nickname (case-insensitive)."""
        found = await self.get(agent_id, name_or_id)
        if found is not None:
            return found
        # A name is matched literally: "a_b" must not find "axb" through LIKE's wildcards.
        literal = name_or_id.replace("/", "//").replace("%", "/%").replace("_", "/_")
        async with self._engine.connect() as conn:
            user_id = await conn.scalar(
                select(user_nicknames.c.user_id)
                .where(
                    user_nicknames.c.agent_id == agent_id,
                    user_nicknames.c.nickname.ilike(literal, escape="/"),
                )
                .order_by(user_nicknames.c.last_seen.desc())
                .limit(1)
            )
        return None if user_id is None else await self.get(agent_id, user_id)

    async def note_nickname(
        self, agent_id: str, user_id: str, nickname: str, seen_at: datetime
    ) -> bool:
        """A name seen outside a message (a nickname change) joins the nickname history of a
        user already known; False (nothing stored) for someone the bot has not met."""
        nickname = nickname.strip()[:200]
        if not nickname:
            return False
        _, nickname_upsert = _upserts(self._engine.dialect.name)
        async with self._engine.begin() as conn:
            known = await conn.scalar(
                select(users.c.user_id).where(
                    users.c.agent_id == agent_id, users.c.user_id == user_id
                )
            )
            if known is None:
                return False
            await conn.execute(
                nickname_upsert,
                [
                    {
                        "agent_id": agent_id,
                        "user_id": user_id,
                        "nickname": nickname,
                        "first_seen": seen_at,
                        "last_seen": seen_at,
                    }
                ],
            )
        return True

    async def nicknames(self, agent_id: str, user_id: str) -> list[Nickname]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(user_nicknames)
                .where(user_nicknames.c.agent_id == agent_id, user_nicknames.c.user_id == user_id)
                .order_by(user_nicknames.c.first_seen)
            )
            return [Nickname(r.nickname, r.first_seen, r.last_seen) for r in rows]

    async def forget(self, agent_id: str, user_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(user_nicknames).where(
                    user_nicknames.c.agent_id == agent_id, user_nicknames.c.user_id == user_id
                )
            )
            await conn.execute(
                delete(users).where(users.c.agent_id == agent_id, users.c.user_id == user_id)
            )
