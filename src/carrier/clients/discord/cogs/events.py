"""Messages into the engine, replies out; edits and deletions into memory; emotes; errors.

Thin by design: convert, call the engine, send.  Which messages are answered is the
engine's decision; what never reaches it is :mod:`carrier.clients.discord.convert`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
from discord import app_commands
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier, reply_mentions
from carrier.clients.discord.convert import guild_emotes, ignore_reason, to_incoming
from carrier.clients.discord.interactions import Refused, answer
from carrier.clients.discord.sending import split_message
from carrier.engine.messages import Reply
from carrier.store.database import DatabaseError

log = logging.getLogger("carrier.discord.events")

TYPING_REFRESH_SECONDS = 8.0
TYPING_DELAY_SECONDS = 0.3
"""Typing shows only when a reply takes longer than this: a Markov reply is out before a
typing indicator could be seen, and each indicator is one more REST call."""
SORRY = "Sorry, something went wrong on my side; it has been logged."


def can_send(channel: discord.abc.Messageable, me: discord.Member | None) -> bool:
    if me is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True
    permissions = channel.permissions_for(me)
    if isinstance(channel, discord.Thread):
        return permissions.send_messages_in_threads
    return permissions.send_messages


def _log_send_failure(channel: discord.abc.Messageable, exc: discord.HTTPException) -> None:
    where = getattr(channel, "id", "?")
    log.warning("could not send in channel %s (%s %s): %s", where, exc.status, exc.code, exc.text)


class EventsCog(commands.Cog, name="events"):
    typing_delay: float = TYPING_DELAY_SECONDS

    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.engine = carrier.engine

    async def cog_load(self) -> None:
        self.bot.tree.error(self.on_app_command_error)

    # -- messages ----------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        assert self.bot.user is not None
        reason = ignore_reason(message, self.bot.user.id)
        if reason is not None:
            log.debug("ignored message %s: %s", message.id, reason)
            return
        incoming = to_incoming(message, self.bot.user.id)
        me = message.guild.me if message.guild is not None else None
        if not can_send(message.channel, me):
            # Still part of the conversation (and the chain); just never answered here.
            log.info("cannot send in channel %s; recording only", message.channel.id)
            try:
                await self.engine.record(incoming)
            except DatabaseError as exc:
                log.error("could not record message %s: %s", message.id, exc)
            return
        typing = None
        if incoming.mentions_bot or incoming.reply_to_bot:
            typing = asyncio.create_task(self._type_in(message.channel))
        try:
            outcome = await self.engine.handle(incoming)
        except DatabaseError as exc:
            log.error("could not handle message %s: %s", message.id, exc)
            return
        except Exception:
            log.exception(
                "handling message %s in channel %s failed", message.id, incoming.channel_id
            )
            return
        finally:
            if typing is not None:
                typing.cancel()
        if outcome.reply is not None:
            await self.send_reply(message, outcome.reply)

    async def send_reply(self, message: discord.Message, reply: Reply) -> None:
        """Send ``reply`` as a Discord reply to ``message`` (split on sentence boundaries
        when long), then tell the engine its id."""
        pieces = split_message(reply.text) or ["…"]
        reference = message.to_reference(fail_if_not_exists=False)
        try:
            first = await message.channel.send(
                pieces[0], reference=reference, allowed_mentions=reply_mentions(message.author)
            )
        except discord.HTTPException as exc:
            _log_send_failure(message.channel, exc)
            return
        try:
            for piece in pieces[1:]:
                await message.channel.send(piece)
        except discord.HTTPException as exc:
            _log_send_failure(message.channel, exc)
        try:
            await self.engine.acknowledge(reply, str(first.id))
        except DatabaseError as exc:
            log.error("could not note the id of reply %s: %s", first.id, exc)

    async def _type_in(self, channel: discord.abc.Messageable) -> None:
        """The typing indicator while a reply is generated, once it takes longer than
        ``typing_delay`` (refreshed, as Discord drops it after about ten seconds)."""
        await asyncio.sleep(self.typing_delay)
        with contextlib.suppress(discord.HTTPException):
            while True:
                await channel.typing()
                await asyncio.sleep(TYPING_REFRESH_SECONDS)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if "content" not in payload.data:
            return  # an embed resolved, a pin: not a change of text
        message = payload.message
        if message.guild is None or message.webhook_id is not None:
            return
        try:
            await self.engine.message_edited(
                str(payload.channel_id), str(payload.message_id), message.clean_content
            )
        except DatabaseError as exc:
            log.error("could not apply the edit of message %s: %s", payload.message_id, exc)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._deleted(payload.channel_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._deleted(payload.channel_id, sorted(payload.message_ids))

    async def _deleted(self, channel_id: int, message_ids: list[int]) -> None:
        for message_id in message_ids:
            try:
                await self.engine.message_deleted(str(channel_id), str(message_id))
            except DatabaseError as exc:
                log.error("could not apply the deletion of message %s: %s", message_id, exc)

    @commands.Cog.listener()
    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        """A new nickname goes into the user's nickname history at once."""
        if before.display_name == after.display_name or after.bot:
            return
        try:
            await self.carrier.store.users.note_nickname(
                self.carrier.agent_id, str(after.id), after.display_name, self.engine.now()
            )
        except DatabaseError as exc:
            log.error("could not note the new name of user %s: %s", after.id, exc)

    # -- guilds ------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._store_emotes(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._store_emotes(guild)

    @commands.Cog.listener()
    async def on_guild_emojis_update(
        self,
        guild: discord.Guild,
        before: object,
        after: object,
    ) -> None:
        await self._store_emotes(guild)

    async def _store_emotes(self, guild: discord.Guild) -> None:
        try:
            await self.carrier.store.emotes.replace(
                self.carrier.agent_id, str(guild.id), guild_emotes(guild)
            )
        except DatabaseError as exc:
            log.error("could not store the emotes of guild %s: %s", guild.id, exc)

    # -- errors ------------------------------------------------------------------------------

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Every slash command's error: a clear word to the user, the details in the log.
        (The bot has no prefix commands: messages go to the engine, never to a command
        parser, so this is the only command error handler.)"""
        if isinstance(error, Refused):
            text = str(error)
        elif isinstance(error, app_commands.TransformerError):
            text = f"I couldn't use {error.value!r} there: {error}"[:300]
        elif isinstance(error, app_commands.CheckFailure):
            text = "You are not allowed to use this command here."
        elif isinstance(error, app_commands.CommandInvokeError) and isinstance(
            error.original, ValueError
        ):
            text = str(error.original)
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed", command, exc_info=error)
            text = SORRY
        try:
            await answer(interaction, text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about an error: %s", exc)
