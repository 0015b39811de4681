"""Everyday commands: polls, user and server info, support tickets, and for everyone
``/memory me`` and ``/forget me``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import discord
from discord import app_commands
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier
from carrier.clients.discord.interactions import Refused, answer, guild_member, require_admin

log = logging.getLogger("carrier.discord.utility")

MAX_POLL_ANSWERS = 10


def poll_answers(text: str) -> list[str]:
    """Answers separated by ``;`` or ``|``: 2 to 10 of them, each at most 55 characters."""
    answers = [a.strip() for a in text.replace("|", ";").split(";") if a.strip()]
    if not 2 <= len(answers) <= MAX_POLL_ANSWERS:
        raise Refused(f"A poll needs 2 to {MAX_POLL_ANSWERS} answers separated by ';'.")
    too_long = [a for a in answers if len(a) > 55]
    if too_long:
        raise Refused(f"Answers are at most 55 characters: {too_long[0][:60]!r}.")
    return answers


def _when(moment: datetime | None) -> str:
    return discord.utils.format_dt(moment, "R") if moment is not None else "unknown"


class UtilityCog(commands.Cog, name="utility"):
    memory = app_commands.Group(name="memory", description="What the bot remembers")
    forget = app_commands.Group(name="forget", description="Make the bot forget")
    ticket = app_commands.Group(name="ticket", description="Support tickets", guild_only=True)

    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.agent = carrier.agent_id

    # -- polls and info ----------------------------------------------------------------------

    @app_commands.command(name="poll", description="Start a poll")
    @app_commands.describe(answers="Answers separated by ';'", hours="How long it runs (1-768)")
    async def poll(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 300],
        answers: str,
        hours: app_commands.Range[int, 1, 768] = 24,
        multiple: bool = False,
    ) -> None:
        poll = discord.Poll(question, timedelta(hours=hours), multiple=multiple)
        for text in poll_answers(answers):
            poll.add_answer(text=text)
        await interaction.response.send_message(poll=poll)

    @app_commands.command(name="userinfo", description="About a member")
    @app_commands.guild_only()
    async def userinfo(
        self, interaction: discord.Interaction, member: discord.Member | None = None
    ) -> None:
        target = member or guild_member(interaction)
        nicknames = await self.carrier.store.users.nicknames(self.agent, str(target.id))
        roles = [r.mention for r in reversed(target.roles) if not r.is_default()]
        embed = discord.Embed(title=str(target), colour=target.colour)
        embed.add_field(name="id", value=str(target.id))
        embed.add_field(name="display name", value=target.display_name)
        embed.add_field(name="account created", value=_when(target.created_at))
        embed.add_field(name="joined", value=_when(target.joined_at))
        embed.add_field(name="roles", value=", ".join(roles)[:1000] or "none", inline=False)
        if nicknames:
            names = ", ".join(n.nickname for n in nicknames)[:1000]
            embed.add_field(name="names seen", value=names, inline=False)
        await interaction.response.send_message(
            embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="serverinfo", description="About this server")
    @app_commands.guild_only()
    async def serverinfo(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        assert guild is not None
        embed = discord.Embed(title=guild.name)
        embed.add_field(name="id", value=str(guild.id))
        embed.add_field(name="owner", value=f"<@{guild.owner_id}>")
        embed.add_field(name="members", value=str(guild.member_count or len(guild.members)))
        embed.add_field(name="text channels", value=str(len(guild.text_channels)))
        embed.add_field(name="roles", value=str(len(guild.roles)))
        embed.add_field(name="emotes", value=str(len(guild.emojis)))
        embed.add_field(name="created", value=_when(guild.created_at))
        await interaction.response.send_message(
            embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    # -- people's own memory -----------------------------------------------------------------

    @memory.command(name="me", description="What the bot knows about you")
    async def memory_me(self, interaction: discord.Interaction) -> None:
        known = await self.carrier.memory.what_i_know(str(interaction.user.id))
        lines = [f"Messages of yours I keep: {known.messages_kept}"]
        if known.user is not None:
            lines.append(f"Known as {known.user.name} since {known.user.first_seen:%Y-%m-%d}")
        if known.relationship is not None:
            r = known.relationship
            lines.append(
                f"Relationship: rapport {r.rapport:.1f}, trust {r.trust:.1f}, "
                f"anger {r.anger:.1f}, formality {r.formality:.1f}"
            )
        if known.facts:
            lines.append("Facts:")
            lines.extend(f"- [{f.category}] {f.fact}" for f in known.facts)
        else:
            lines.append("No facts about you.")
        lines.append("Use /forget me to erase all of it.")
        await answer(interaction, "\n".join(lines))

    @forget.command(name="me", description="Erase what the bot knows about you")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        forgotten = await self.carrier.memory.forget(str(interaction.user.id))
        await answer(
            interaction,
            f"Forgotten: {forgotten.facts} facts, {forgotten.messages} messages"
            + (", and our relationship." if forgotten.relationship else "."),
        )

    # -- support tickets ---------------------------------------------------------------------

    @ticket.command(name="open", description="Open a private support ticket")
    async def ticket_open(
        self, interaction: discord.Interaction, subject: app_commands.Range[str, 1, 200]
    ) -> None:
        member = guild_member(interaction)
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel):
            raise Refused("Open tickets from a text channel, not a thread.")
        if not channel.permissions_for(member.guild.me).create_private_threads:
            raise Refused("I need the Create Private Threads permission in this channel.")
        thread = await channel.create_thread(
            name=f"ticket: {subject}"[:100],
            type=discord.ChannelType.private_thread,
            invitable=False,
            reason=f"support ticket opened by {member} ({member.id})",
        )
        await thread.add_user(member)
        ticket = await self.carrier.store.tickets.open(
            self.agent,
            guild_id=str(member.guild.id),
            channel_id=str(channel.id),
            thread_id=str(thread.id),
            opener_id=str(member.id),
            subject=subject,
            at=self.carrier.engine.now(),
        )
        await thread.send(
            f"Ticket #{ticket.id} opened by {member.mention}: {ticket.subject}\n"
            "Close it with /ticket close.",
            allowed_mentions=discord.AllowedMentions(users=[member], everyone=False, roles=False),
        )
        await answer(interaction, f"Ticket #{ticket.id} opened: {thread.mention}")

    @ticket.command(name="close", description="Close this ticket (run it in the ticket)")
    async def ticket_close(self, interaction: discord.Interaction) -> None:
        member = guild_member(interaction)
        ticket = await self.carrier.store.tickets.by_thread(self.agent, str(interaction.channel_id))
        if ticket is None or ticket.status != "open":
            raise Refused("Run /ticket close inside an open ticket's thread.")
        if str(member.id) != ticket.opener_id and not await self._is_staff(interaction, member):
            raise Refused("Only the person who opened the ticket or staff can close it.")
        await self.carrier.store.tickets.close(
            self.agent, ticket.thread_id, str(member.id), self.carrier.engine.now()
        )
        await answer(interaction, f"Ticket #{ticket.id} closed.", ephemeral=False)
        thread = interaction.channel
        if isinstance(thread, discord.Thread):
            try:
                await thread.edit(archived=True, locked=True, reason=f"closed by {member}")
            except discord.HTTPException as exc:
                log.warning("could not archive ticket thread %s: %s", thread.id, exc)

    @ticket.command(name="list", description="Open tickets (staff: all; others: yours)")
    async def ticket_list(self, interaction: discord.Interaction) -> None:
        member = guild_member(interaction)
        tickets = await self.carrier.store.tickets.listing(self.agent, str(member.guild.id))
        if not await self._is_staff(interaction, member):
            tickets = [t for t in tickets if t.opener_id == str(member.id)]
        if not tickets:
            await answer(interaction, "No open tickets.")
            return
        lines = [f"#{t.id} <#{t.thread_id}> by <@{t.opener_id}>: {t.subject}" for t in tickets]
        await answer(interaction, "\n".join(lines))

    async def _is_staff(self, interaction: discord.Interaction, member: discord.Member) -> bool:
        if member.guild_permissions.manage_threads:
            return True
        try:
            await require_admin(interaction, self.carrier)
        except Refused:
            return False
        return True
