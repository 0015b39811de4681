"""The config revision: a counter that changes whenever the persona, the global state, the
channel and guild settings or the guild emotes change (triggers of migration 0007, so every
writer bumps it, whatever process it runs in)."""

from __future__ import annotations

from sqlalchemy import select

from carrier.store.database import Database
from carrier.store.schema import config_revision

_CURRENT = select(config_revision.c.revision).where(config_revision.c.id == 1)


class ConfigRevisionRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def current(self) -> int | None:
        """The revision now; None when its row is missing (then nothing may be reused)."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(_CURRENT)
        return None if value is None else int(value)
