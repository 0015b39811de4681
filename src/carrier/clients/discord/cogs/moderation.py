"""``/kick``, ``/ban``, ``/unban``, ``/timeout``: checked before anything reaches Discord.

The invoker's permission, the bot's permission and the role hierarchy are checked on every
call (:func:`~carrier.clients.discord.permissions.moderation_refusal`); the reason goes to
the audit log with who asked for it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import discord
from discord import app_commands
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier
from carrier.clients.discord.interactions import Refused, answer, guild_member
from carrier.clients.discord.permissions import Actor, moderation_refusal

log = logging.getLogger("carrier.discord.moderation")

AUDIT_REASON_MAX = 512
MAX_TIMEOUT_MINUTES = 28 * 24 * 60


def audit_reason(invoker: discord.abc.User, reason: str | None) -> str:
    """What the audit log shows: who asked through the bot, and why."""
    text = " ".join((reason or "no reason given").split())
    return f"{invoker} ({invoker.id}): {text}"[:AUDIT_REASON_MAX]


class ModerationCog(commands.Cog, name="moderation"):
    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier

    def _check(
        self, interaction: discord.Interaction, action: str, target: discord.Member | None
    ) -> tuple[discord.Member, discord.Guild]:
        invoker = guild_member(interaction)
        guild = invoker.guild
        refusal = moderation_refusal(
            action,
            Actor.of(invoker),
            Actor.of(guild.me),
            Actor.of(target) if target is not None else None,
        )
        if refusal is not None:
            raise Refused(refusal)
        return invoker, guild

    @app_commands.command(name="kick", description="Remove a member from the server")
    @app_commands.guild_only()
    @app_commands.default_permissions(kick_members=True)
    async def kick(
        self, interaction: discord.Interaction, member: discord.Member, reason: str | None = None
    ) -> None:
        invoker, _ = self._check(interaction, "kick", member)
        await member.kick(reason=audit_reason(invoker, reason))
        await answer(interaction, f"Kicked {member} ({member.id}).", ephemeral=False)

    @app_commands.command(name="ban", description="Ban a user from the server")
    @app_commands.guild_only()
    @app_commands.default_permissions(ban_members=True)
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: str | None = None,
        delete_message_days: app_commands.Range[int, 0, 7] = 0,
    ) -> None:
        guild = interaction.guild
        target = guild.get_member(user.id) if guild is not None else None
        invoker, guild = self._check(interaction, "ban", target)
        await guild.ban(
            user,
            reason=audit_reason(invoker, reason),
            delete_message_seconds=delete_message_days * 86_400,
        )
        await answer(interaction, f"Banned {user} ({user.id}).", ephemeral=False)

    @app_commands.command(name="unban", description="Lift a ban by user id")
    @app_commands.guild_only()
    @app_commands.default_permissions(ban_members=True)
    async def unban(
        self, interaction: discord.Interaction, user_id: str, reason: str | None = None
    ) -> None:
        invoker, guild = self._check(interaction, "unban", None)
        if not user_id.strip().isdigit():
            raise Refused(f"{user_id[:40]!r} is not a user id (a number).")
        try:
            await guild.unban(discord.Object(int(user_id)), reason=audit_reason(invoker, reason))
        except discord.NotFound:
            raise Refused(f"User {user_id} is not banned here.") from None
        await answer(interaction, f"Unbanned {user_id}.", ephemeral=False)

    @app_commands.command(name="timeout", description="Mute a member for a while")
    @app_commands.guild_only()
    @app_commands.default_permissions(moderate_members=True)
    async def timeout(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        minutes: app_commands.Range[int, 1, MAX_TIMEOUT_MINUTES],
        reason: str | None = None,
    ) -> None:
        invoker, _ = self._check(interaction, "timeout", member)
        await member.timeout(timedelta(minutes=minutes), reason=audit_reason(invoker, reason))
        await answer(interaction, f"Timed out {member} for {minutes} minutes.", ephemeral=False)
