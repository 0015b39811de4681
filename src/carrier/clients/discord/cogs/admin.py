"""``/admin ...`` and ``/train``: the persona, people's memories, relationships, global
state, consolidation and Markov training, for admins (checked on every call).

Every change is written to the database at once, and the engine reads it on the very next
message.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier
from carrier.clients.discord.interactions import answer, require_admin
from carrier.persona.service import add_item
from carrier.store.relationships import RANGES

log = logging.getLogger("carrier.discord.admin")

PersonaKind = Literal["trait", "lore", "fact"]
Metric = Literal["anger", "rapport", "trust", "formality"]
TRAIN_BATCH = 200
TRAIN_DEFAULT_LIMIT = 5000


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, name="admin", description="Bot administration"):
    persona = app_commands.Group(name="persona", description="The persona's traits, lore, facts")
    memory = app_commands.Group(name="memory", description="What the bot remembers about people")
    relationship = app_commands.Group(name="relationship", description="Relationship values")
    state = app_commands.Group(name="state", description="Global state (mood, status, ...)")

    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.agent = carrier.agent_id
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        await require_admin(interaction, self.carrier)
        return True

    # -- persona -----------------------------------------------------------------------------

    @persona.command(name="add", description="Add a trait, lore line or fact to the persona")
    async def persona_add(
        self, interaction: discord.Interaction, kind: PersonaKind, text: str
    ) -> None:
        item = await add_item(self.carrier.store, self.agent, kind, text)
        await answer(interaction, f"Added {kind} #{item.id}: {item.text}")

    @persona.command(name="list", description="List the persona's traits, lore or facts")
    async def persona_list(self, interaction: discord.Interaction, kind: PersonaKind) -> None:
        items = await self.carrier.store.persona.items(self.agent, kind)
        if not items:
            await answer(interaction, f"No {kind} items.")
            return
        await answer(interaction, "\n".join(f"#{i.id} {i.text}" for i in items))

    @persona.command(name="remove", description="Remove a persona item by its number")
    async def persona_remove(self, interaction: discord.Interaction, item_id: int) -> None:
        removed = await self.carrier.store.persona.remove(self.agent, item_id)
        await answer(interaction, f"Removed #{item_id}." if removed else f"No item #{item_id}.")

    # -- people's memories -------------------------------------------------------------------

    @memory.command(name="list", description="The facts remembered about a user")
    async def memory_list(self, interaction: discord.Interaction, user: discord.User) -> None:
        known = await self.carrier.memory.what_i_know(str(user.id))
        if not known.facts:
            await answer(interaction, f"Nothing remembered about {user.display_name}.")
            return
        lines = [f"#{f.id} [{f.category}] {f.fact} (×{f.reference_count})" for f in known.facts]
        await answer(interaction, f"About {user.display_name}:\n" + "\n".join(lines))

    @memory.command(name="add", description="Remember a fact about a user")
    async def memory_add(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        fact: str,
        category: str = "general",
    ) -> None:
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        remembered = await self.carrier.memory.add_fact(
            str(user.id), fact, category, guild_id=guild_id
        )
        await answer(interaction, f"Fact #{remembered.fact_id} {remembered.outcome}.")

    @memory.command(name="edit", description="Change the text of a remembered fact")
    async def memory_edit(self, interaction: discord.Interaction, fact_id: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            await answer(interaction, "A fact needs some text.")
            return
        fact = await self.carrier.store.facts.get(fact_id)
        if fact is None or fact.agent_id != self.agent:
            await answer(interaction, f"No fact #{fact_id}.")
            return
        await self.carrier.store.facts.update_text(self.agent, fact_id, text)
        await self.carrier.memory.reembed()  # only facts without a current vector
        await answer(interaction, f"Fact #{fact_id} is now: {text}")

    @memory.command(name="delete", description="Forget one remembered fact")
    async def memory_delete(self, interaction: discord.Interaction, fact_id: int) -> None:
        deleted = await self.carrier.memory.delete_facts([fact_id])
        await answer(
            interaction, f"Deleted fact #{fact_id}." if deleted else f"No fact #{fact_id}."
        )

    # -- relationships -----------------------------------------------------------------------

    @relationship.command(name="show", description="The bot's relationship with a user")
    async def relationship_show(self, interaction: discord.Interaction, user: discord.User) -> None:
        engine = self.carrier.engine
        rel = await engine.parts.relationships.current(self.agent, str(user.id), engine.now())
        values = ", ".join(f"{k} {v:g}" for k, v in rel.as_dict().items())
        await answer(interaction, f"{values}\n{rel.describe(user.display_name)}")

    @relationship.command(name="set", description="Set one relationship value")
    async def relationship_set(
        self, interaction: discord.Interaction, user: discord.User, metric: Metric, value: float
    ) -> None:
        engine = self.carrier.engine
        rel = await engine.parts.relationships.set(
            self.agent, str(user.id), engine.now(), **{metric: value}
        )
        low, high = RANGES[metric]
        await answer(
            interaction,
            f"{metric} with {user.display_name} is now {getattr(rel, metric):g} "
            f"(range {low:g}..{high:g}).",
        )

    # -- global state ------------------------------------------------------------------------

    @state.command(name="get", description="Read global state (a key, or a key prefix)")
    async def state_get(self, interaction: discord.Interaction, key: str = "") -> None:
        values = await self.carrier.store.state.all(self.agent, prefix=key.strip())
        if not values:
            await answer(interaction, f"No state under {key!r}.")
            return
        await answer(interaction, "\n".join(f"{k} = {v}" for k, v in sorted(values.items())))

    @state.command(name="set", description="Write one global state value")
    async def state_set(self, interaction: discord.Interaction, key: str, value: str) -> None:
        key = key.strip()
        if not key or len(key) > 128:
            await answer(interaction, "A key is 1 to 128 characters.")
            return
        await self.carrier.store.state.set(self.agent, key, value)
        await answer(interaction, f"{key} = {value}")

    # -- jobs --------------------------------------------------------------------------------

    @app_commands.command(name="consolidate", description="Consolidate memory now")
    async def consolidate(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.carrier.memory.consolidate(self.carrier.engine.now())
        if report.skipped_locked:
            await answer(interaction, "A consolidation is already running; try again later.")
            return
        self.carrier.engine.consolidated(asdict(report))
        await answer(
            interaction,
            f"Archived {report.messages_archived} messages; {report.facts_new} new facts, "
            f"{report.facts_reinforced} reinforced, {report.facts_superseded} superseded.",
        )


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class TrainCog(commands.Cog, name="train"):
    """``/train``: the channel's history into the guild's Markov chain, for admins."""

    train_batch: int = TRAIN_BATCH
    """Messages learned per transaction; the response is edited with the progress after
    each batch."""

    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.agent = carrier.agent_id

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        await require_admin(interaction, self.carrier)
        return True

    @app_commands.command(name="train", description="Learn this channel's history")
    @app_commands.describe(limit="How many messages to read, newest first (default 5,000)")
    async def train(
        self,
        interaction: discord.Interaction,
        limit: app_commands.Range[int, 1, 100_000] = TRAIN_DEFAULT_LIMIT,
    ) -> None:
        """Read the channel's history into the guild's Markov chain, reporting progress by
        editing the response."""
        channel = interaction.channel
        if interaction.guild is None or not isinstance(
            channel, discord.TextChannel | discord.Thread
        ):
            await answer(interaction, "Run this in a server's text channel.")
            return
        if not channel.permissions_for(interaction.guild.me).read_message_history:
            await answer(interaction, "I need the Read Message History permission here.")
            return
        await interaction.response.send_message(f"Reading #{channel.name}…")
        markov = self.carrier.engine.parts.markov
        guild_id = str(interaction.guild.id)
        read = learned = 0
        batch: list[str] = []

        async def flush() -> None:
            nonlocal learned
            result = await markov.learn_many(self.agent, guild_id, batch)
            learned += result.learned
            batch.clear()
            await interaction.edit_original_response(
                content=f"Training on #{channel.name}: read {read}, learned {learned}…"
            )

        async for message in channel.history(limit=limit, oldest_first=False):
            read += 1
            if message.author.bot or message.webhook_id is not None or not message.content:
                continue
            batch.append(message.clean_content)
            if len(batch) >= self.train_batch:
                await flush()
        if batch:
            await flush()
        await interaction.edit_original_response(
            content=f"Done: read {read} messages of #{channel.name}, learned {learned}."
        )
