"""What every slash command shares: answering, refusing, and the admin check."""

from __future__ import annotations

import discord
from discord import app_commands

from carrier.clients.discord.bot import Carrier
from carrier.clients.discord.permissions import is_admin

MAX_CONTENT = 1990


class Refused(app_commands.CheckFailure):
    """A command refused for a reason the invoker should read (sent back ephemeral)."""


async def answer(interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
    """Answer once, or follow up when the interaction was already answered or deferred.
    Long text is cut to fit one message; nobody is pinged."""
    if len(text) > MAX_CONTENT:
        text = text[: MAX_CONTENT - 1] + "…"
    mentions = discord.AllowedMentions.none()
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=ephemeral, allowed_mentions=mentions)
    else:
        await interaction.response.send_message(
            text, ephemeral=ephemeral, allowed_mentions=mentions
        )


def guild_member(interaction: discord.Interaction) -> discord.Member:
    """The invoker as a member of the guild; refuses outside a server."""
    if interaction.guild is None or not isinstance(interaction.user, discord.Member):
        raise Refused("This command works in a server, not in direct messages.")
    return interaction.user


async def require_admin(interaction: discord.Interaction, carrier: Carrier) -> discord.Member:
    """The invoker, if they may use admin commands (checked against the database and the
    configuration on every call); otherwise :class:`Refused`."""
    member = guild_member(interaction)
    assert interaction.guild is not None
    policy = await carrier.store.channels.policy(
        carrier.agent_id, str(interaction.guild.id), str(interaction.channel_id)
    )
    allowed = is_admin(
        member.id,
        member.guild_permissions,
        [role.id for role in member.roles],
        admin_user_ids=carrier.settings.discord.admin_user_ids,
        admin_role_ids=carrier.settings.discord.admin_role_ids,
        guild_admin_role_id=policy.admin_role_id,
    )
    if not allowed:
        raise Refused(
            "You need the Manage Server permission (or a bot admin role) for this command."
        )
    return member
