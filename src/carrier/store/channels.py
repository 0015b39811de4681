"""Guild and channel settings (active or not, reply mode, chance) and guild emotes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, and_, bindparam, delete, literal, select

from carrier.store.database import Database
from carrier.store.schema import channel_settings, guild_emotes, guild_settings
from carrier.store.upsert import insert


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """What the settings say for one channel (guild settings folded in)."""

    active: bool = True
    reply_mode: str = "contextual"
    reply_chance: float | None = None
    generation_mode: str | None = None
    """markov, llm or hybrid; None: the agent's mode."""
    quiet_hours: tuple[int, int] | None = None
    """The guild's quiet hours, local ``(start, end)`` (end exclusive, may wrap midnight):
    only mentions and replies are answered, and the bot does not speak up on its own."""
    admin_role_id: str | None = None
    """The guild's own admin role (besides Manage Server and the configured admins)."""

    def is_quiet(self, hour: int) -> bool:
        """Whether the local ``hour`` (0..23) falls in the quiet hours."""
        if self.quiet_hours is None:
            return False
        start, end = self.quiet_hours
        if start == end:
            return False
        return start <= hour < end if start < end else hour >= start or hour < end


class _Row:
    """One table's columns of a joined row, by their unprefixed names."""

    def __init__(self, mapping: Any, prefix: str) -> None:
        self._mapping = mapping
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        return self._mapping[self._prefix + name]


def _policy_query() -> Select[Any]:
    """Both settings rows of a channel in one statement (one driver round trip on every
    message): a single-row anchor left-joined to each table, so a missing row comes back as
    NULLs.  Built once; the ids are bound parameters (a NULL guild id matches no row)."""
    anchor = select(literal(1).label("one")).subquery("anchor")
    channel_row = channel_settings.alias("c")
    guild_row = guild_settings.alias("g")
    agent = bindparam("agent_id", type_=String)
    return select(
        *(column.label(f"c_{column.name}") for column in channel_row.c),
        *(column.label(f"g_{column.name}") for column in guild_row.c),
    ).select_from(
        anchor.outerjoin(
            channel_row,
            and_(
                channel_row.c.agent_id == agent,
                channel_row.c.channel_id == bindparam("channel_id", type_=String),
            ),
        ).outerjoin(
            guild_row,
            and_(
                guild_row.c.agent_id == agent,
                guild_row.c.guild_id == bindparam("guild_id", type_=String),
            ),
        )
    )


_POLICY = _policy_query()


class ChannelSettingsRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def policy(self, agent_id: str, guild_id: str | None, channel_id: str) -> ChannelPolicy:
        params = {"agent_id": agent_id, "guild_id": guild_id, "channel_id": channel_id}
        async with self._engine.connect() as conn:
            row = (await conn.execute(_POLICY, params)).one()._mapping
        channel = _Row(row, "c_") if row["c_agent_id"] is not None else None
        guild = _Row(row, "g_") if row["g_agent_id"] is not None else None
        active = (guild is None or guild.active) and (channel is None or channel.active)
        chance = channel.reply_chance if channel is not None else None
        if chance is None and guild is not None:
            chance = guild.reply_chance
        mode = channel.reply_mode if channel is not None else "contextual"
        generation = channel.generation_mode if channel is not None else None
        quiet = None
        if guild is not None and guild.quiet_hours_start is not None:
            quiet = (int(guild.quiet_hours_start), int(guild.quiet_hours_end))
        return ChannelPolicy(
            active=active,
            reply_mode=mode,
            reply_chance=chance,
            generation_mode=generation,
            quiet_hours=quiet,
            admin_role_id=guild.admin_role_id if guild is not None else None,
        )

    async def set_channel(
        self,
        agent_id: str,
        channel_id: str,
        guild_id: str | None = None,
        *,
        active: bool | None = None,
        reply_mode: str | None = None,
        reply_chance: float | None = None,
        generation_mode: str | None = None,
        clear_generation_mode: bool = False,
    ) -> None:
        """Change what is given (None: leave as it is); ``clear_generation_mode`` puts the
        channel back on the agent's generation mode."""
        if generation_mode is not None and clear_generation_mode:
            raise ValueError("give a generation mode or clear it, not both")
        values: dict[str, object] = {"updated_at": datetime.now(UTC)}
        if active is not None:
            values["active"] = active
        if reply_mode is not None:
            values["reply_mode"] = reply_mode
        if generation_mode is not None or clear_generation_mode:
            values["generation_mode"] = generation_mode
        if reply_chance is not None:
            values["reply_chance"] = reply_chance
        if guild_id is not None:
            values["guild_id"] = guild_id
        stmt = insert(channel_settings, self._engine.dialect.name).values(
            agent_id=agent_id,
            channel_id=channel_id,
            guild_id=guild_id,
            active=True if active is None else active,
            reply_mode=reply_mode or "contextual",
            reply_chance=reply_chance,
            generation_mode=generation_mode,
            updated_at=values["updated_at"],
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["agent_id", "channel_id"], set_=values)
            )

    async def set_guild(
        self,
        agent_id: str,
        guild_id: str,
        *,
        active: bool | None = None,
        reply_chance: float | None = None,
        quiet_hours: tuple[int, int] | None = None,
        clear_quiet_hours: bool = False,
        admin_role_id: str | None = None,
        clear_admin_role: bool = False,
    ) -> None:
        """Change what is given; ``clear_*`` removes the quiet hours or the admin role."""
        if quiet_hours is not None and not all(0 <= h <= 23 for h in quiet_hours):
            raise ValueError("quiet hours are whole hours from 0 to 23")
        values: dict[str, object] = {"updated_at": datetime.now(UTC)}
        if active is not None:
            values["active"] = active
        if reply_chance is not None:
            values["reply_chance"] = reply_chance
        if quiet_hours is not None or clear_quiet_hours:
            values["quiet_hours_start"] = quiet_hours[0] if quiet_hours else None
            values["quiet_hours_end"] = quiet_hours[1] if quiet_hours else None
        if admin_role_id is not None or clear_admin_role:
            values["admin_role_id"] = admin_role_id
        stmt = insert(guild_settings, self._engine.dialect.name).values(
            agent_id=agent_id,
            guild_id=guild_id,
            active=True if active is None else active,
            reply_chance=reply_chance,
            quiet_hours_start=quiet_hours[0] if quiet_hours else None,
            quiet_hours_end=quiet_hours[1] if quiet_hours else None,
            admin_role_id=admin_role_id,
            updated_at=values["updated_at"],
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["agent_id", "guild_id"], set_=values)
            )


class EmoteRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def replace(self, agent_id: str, guild_id: str, emotes: dict[str, str]) -> None:
        """Replace the guild's custom emotes (name -> platform markup)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(guild_emotes).where(
                    guild_emotes.c.agent_id == agent_id, guild_emotes.c.guild_id == guild_id
                )
            )
            if emotes:
                await conn.execute(
                    guild_emotes.insert(),
                    [
                        {"agent_id": agent_id, "guild_id": guild_id, "name": name, "markup": markup}
                        for name, markup in emotes.items()
                    ],
                )

    async def for_guild(self, agent_id: str, guild_id: str | None) -> dict[str, str]:
        if guild_id is None:
            return {}
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(guild_emotes.c.name, guild_emotes.c.markup).where(
                    guild_emotes.c.agent_id == agent_id, guild_emotes.c.guild_id == guild_id
                )
            )
            return {row.name: row.markup for row in rows}
