"""Discord objects -> the engine's platform-neutral values.

Which messages reach the engine at all is decided here, with a reason for the log:

* the bot's own messages, webhook messages and system messages (joins, pins, boosts, ...)
  are ignored;
* direct messages are ignored: the bot lives in servers, and nothing a person writes to it
  privately is stored (the policy is documented in the README);
* other bots reach the engine marked as bots; the engine's ``answer_bots`` decides;
* attachment-only and sticker-only messages reach the engine with empty text: they are
  recorded (the author was active) and never answered.
"""

from __future__ import annotations

from datetime import UTC

import discord

from carrier.engine.messages import IncomingMessage

_CONVERSATION_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


def ignore_reason(message: discord.Message, bot_user_id: int) -> str | None:
    """Why this message never reaches the engine; None when it does."""
    if message.author.id == bot_user_id:
        return "own_message"
    if message.webhook_id is not None:
        return "webhook"
    if message.type not in _CONVERSATION_TYPES:
        return "system_message"
    if message.guild is None:
        return "direct_message"
    return None


def to_incoming(message: discord.Message, bot_user_id: int) -> IncomingMessage:
    """The engine's view of a guild message (see :func:`ignore_reason` for what is kept)."""
    reply_to_id: str | None = None
    reply_to_author: str | None = None
    reference = message.reference
    if reference is not None and reference.message_id is not None:
        reply_to_id = str(reference.message_id)
        referenced = reference.resolved or reference.cached_message
        if isinstance(referenced, discord.Message):
            reply_to_author = str(referenced.author.id)
    return IncomingMessage(
        channel_id=str(message.channel.id),
        message_id=str(message.id),
        author_id=str(message.author.id),
        author_name=message.author.display_name,
        text=message_text(message),
        created_at=message.created_at.astimezone(UTC),
        guild_id=str(message.guild.id) if message.guild is not None else None,
        author_is_bot=message.author.bot,
        mentions_bot=any(user.id == bot_user_id for user in message.mentions),
        reply_to_message_id=reply_to_id,
        reply_to_author_id=reply_to_author,
        reply_to_bot=reply_to_author == str(bot_user_id),
        is_direct=message.guild is None,
    )


def message_text(message: discord.Message) -> str:
    """The text as people read it: mentions as ``@name``, ``#channel`` and ``@role``
    (``@everyone`` defused); attachments and stickers add nothing."""
    return message.clean_content.strip()


def guild_emotes(guild: discord.Guild) -> dict[str, str]:
    """The guild's usable custom emotes, name -> markup (``<:name:id>``), for the engine's
    emote step."""
    return {emoji.name: str(emoji) for emoji in guild.emojis if emoji.available}
