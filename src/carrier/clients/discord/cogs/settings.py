"""``/settings ...``: where the bot is active, how it decides to reply and how it writes,
its quiet hours and the guild's admin role.  For admins; every change applies from the next
message."""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier
from carrier.clients.discord.interactions import answer, require_admin

Scope = Literal["channel", "server"]
ReplyMode = Literal["mention", "contextual", "chance"]
GenerationMode = Literal["markov", "llm", "hybrid", "default"]
Hour = app_commands.Range[int, 0, 23]

GENERATION_WORDS = {
    "markov": "from this server's Markov chain only",
    "llm": "with the language model (the Markov chain when it fails)",
    "hybrid": "with the language model, shown samples of this server's voice",
}

MODE_WORDS = {
    "mention": "only when mentioned or replied to",
    "contextual": "when mentioned, replied to, or clearly addressed",
    "chance": "when mentioned or replied to, else at random",
}


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(commands.GroupCog, name="settings", description="Where and how the bot talks"):
    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.agent = carrier.agent_id
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        await require_admin(interaction, self.carrier)
        return True

    @app_commands.command(name="activate", description="Let the bot talk here")
    async def activate(self, interaction: discord.Interaction, scope: Scope = "channel") -> None:
        await self._set_active(interaction, scope, True)

    @app_commands.command(name="deactivate", description="Keep the bot silent here")
    async def deactivate(self, interaction: discord.Interaction, scope: Scope = "channel") -> None:
        await self._set_active(interaction, scope, False)

    async def _set_active(
        self, interaction: discord.Interaction, scope: Scope, active: bool
    ) -> None:
        guild_id = str(interaction.guild_id)
        channels = self.carrier.store.channels
        if scope == "server":
            await channels.set_guild(self.agent, guild_id, active=active)
            where = "in this server"
        else:
            await channels.set_channel(
                self.agent, str(interaction.channel_id), guild_id, active=active
            )
            where = "in this channel"
        verb = "active" if active else "silent"
        await answer(interaction, f"I am now {verb} {where}.")

    @app_commands.command(name="replymode", description="How the bot decides to reply here")
    @app_commands.describe(percent="For chance (and as the fallback of contextual): 0-100")
    async def replymode(
        self,
        interaction: discord.Interaction,
        mode: ReplyMode,
        percent: app_commands.Range[float, 0, 100] | None = None,
    ) -> None:
        if mode == "chance" and percent is None:
            await answer(interaction, "Give the chance in percent, e.g. percent: 5.")
            return
        await self.carrier.store.channels.set_channel(
            self.agent,
            str(interaction.channel_id),
            str(interaction.guild_id),
            reply_mode=mode,
            reply_chance=None if percent is None else percent / 100,
        )
        extra = f" ({percent:g}% chance)" if percent is not None else ""
        await answer(interaction, f"In this channel I reply {MODE_WORDS[mode]}{extra}.")

    @app_commands.command(name="mode", description="How the bot writes its replies here")
    @app_commands.describe(mode="markov, llm, hybrid, or default (the bot's own mode)")
    async def mode(self, interaction: discord.Interaction, mode: GenerationMode) -> None:
        """Set this channel's generation mode, or go back to the bot's default."""
        channels = self.carrier.store.channels
        channel_id, guild_id = str(interaction.channel_id), str(interaction.guild_id)
        if mode == "default":
            await channels.set_channel(self.agent, channel_id, guild_id, clear_generation_mode=True)
            effective = self.carrier.engine.parts.responder.mode_for(None)
            await answer(interaction, f"In this channel I use my default mode ({effective}).")
            return
        await channels.set_channel(self.agent, channel_id, guild_id, generation_mode=mode)
        note = ""
        if self.carrier.engine.parts.responder.mode_for(mode) != mode:
            note = " No language model is configured, so I use the Markov chain for now."
        await answer(interaction, f"In this channel I write {GENERATION_WORDS[mode]}.{note}")

    @app_commands.command(name="quiethours", description="Hours when the bot only answers mentions")
    @app_commands.describe(
        start="First quiet hour (0-23, bot's time zone)", end="First hour after (0-23)"
    )
    async def quiethours(
        self, interaction: discord.Interaction, start: Hour | None = None, end: Hour | None = None
    ) -> None:
        """Set the quiet hours; leave both out to clear them."""
        channels = self.carrier.store.channels
        guild_id = str(interaction.guild_id)
        if start is None and end is None:
            await channels.set_guild(self.agent, guild_id, clear_quiet_hours=True)
            await answer(interaction, "No quiet hours any more.")
            return
        if start is None or end is None or start == end:
            await answer(interaction, "Give both a start and a different end hour (0-23).")
            return
        await channels.set_guild(self.agent, guild_id, quiet_hours=(start, end))
        zone = self.carrier.settings.mood.timezone
        await answer(
            interaction,
            f"Quiet from {start:02d}:00 to {end:02d}:00 ({zone}): I only answer mentions "
            "and replies then, and do not speak up on my own.",
        )

    @app_commands.command(name="adminrole", description="A role that may use admin commands")
    async def adminrole(
        self, interaction: discord.Interaction, role: discord.Role | None = None
    ) -> None:
        """Name the role; leave it out to clear it."""
        channels = self.carrier.store.channels
        guild_id = str(interaction.guild_id)
        if role is None:
            await channels.set_guild(self.agent, guild_id, clear_admin_role=True)
            await answer(interaction, "No bot admin role any more (Manage Server still works).")
            return
        await channels.set_guild(self.agent, guild_id, admin_role_id=str(role.id))
        await answer(interaction, f"Members with {role.name} may now use the admin commands.")

    @app_commands.command(name="show", description="The settings that apply in this channel")
    async def show(self, interaction: discord.Interaction) -> None:
        policy = await self.carrier.store.channels.policy(
            self.agent, str(interaction.guild_id), str(interaction.channel_id)
        )
        chance = "default" if policy.reply_chance is None else f"{policy.reply_chance * 100:g}%"
        quiet = (
            "none"
            if policy.quiet_hours is None
            else f"{policy.quiet_hours[0]:02d}:00-{policy.quiet_hours[1]:02d}:00"
        )
        generation = policy.generation_mode or "default"
        await answer(
            interaction,
            f"active: {'yes' if policy.active else 'no'}\nreply mode: {policy.reply_mode} "
            f"(chance {chance})\ngeneration mode: {generation}\nquiet hours: {quiet}\n"
            f"admin role: {policy.admin_role_id or 'none'}",
        )
