"""Driving the bot: what users, moderators and Discord itself do (messages, edits,
deletions, member updates, slash commands, disconnects, REST failures)."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from carrier.testing.discord_emulator.core import EmulatorCore
from carrier.testing.discord_emulator.flags import Intent
from carrier.testing.discord_emulator.gateway import requires
from carrier.testing.discord_emulator.interactions import build_interaction
from carrier.testing.discord_emulator.messages import USER_MENTION
from carrier.testing.discord_emulator.model import JSON, iso_now
from carrier.testing.discord_emulator.records import Interaction
from carrier.testing.discord_emulator.rest import InjectedFailure

_UNSET: Any = object()


class BotDriving(EmulatorCore):
    async def send_message(
        self,
        channel_id: int | None,
        author_id: int,
        content: str,
        *,
        mentions: Sequence[int] = (),
        reply_to: int | None = None,
        attachments: int = 0,
        sticker: bool = False,
        webhook_id: int | None = None,
        type: int = 0,
        dm: bool = False,
        embeds: Sequence[JSON] = (),
    ) -> JSON:
        """A user (or webhook) posts a message; the bot gets MESSAGE_CREATE. ``dm=True``
        posts in the author's DM channel with the bot (``channel_id`` is then ignored).
        ``<@id>`` in ``content`` counts as a mention, like ``mentions``."""
        channel = self.dm_channel(author_id) if dm else self._channel(channel_id)
        reply = None
        if reply_to is not None:
            reply = self.world.find_message(channel.id, reply_to)
            if reply is None:
                raise KeyError(f"no message {reply_to} in channel {channel.id}")
        mentioned = [*mentions, *(int(u) for u in USER_MENTION.findall(content))]
        message = self.factory.build(
            channel,
            author_id,
            content,
            mentioned=mentioned,
            reply_to=reply,
            attachments=self.factory.fake_attachments(attachments),
            sticker=sticker,
            webhook_id=webhook_id,
            type=type,
            embeds=embeds,
        )
        await self.publish_message(channel, message)
        return message

    async def edit_message(self, channel_id: int, message_id: int, content: str) -> JSON:
        message = self._message(channel_id, message_id)
        message["content"] = content
        message["edited_timestamp"] = iso_now()
        await self.gateway.dispatch(
            "MESSAGE_UPDATE",
            message,
            guild_id=self.world.channels[channel_id].guild_id,
            transform=self.message_view,
        )
        self.changes.notify()
        return message

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        message = self._message(channel_id, message_id)
        await self.remove_message(message)

    async def update_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | None = _UNSET,
        roles: Sequence[int] | None = None,
        communication_disabled_until: str | None = _UNSET,
    ) -> None:
        """Change a member (as a moderator would) and send GUILD_MEMBER_UPDATE."""
        member = self.world.members[(guild_id, user_id)]
        if nick is not _UNSET:
            member.nick = nick
        if roles is not None:
            member.roles = list(roles)
        if communication_disabled_until is not _UNSET:
            member.communication_disabled_until = communication_disabled_until
        await self.dispatch_member_update(member)

    async def remove_member(self, guild_id: int, user_id: int) -> None:
        """The user leaves the guild: GUILD_MEMBER_REMOVE."""
        self.world.members.pop((guild_id, user_id))
        await self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild_id), "user": self.world.users[user_id].payload()},
            guild_id=guild_id,
            transform=requires(Intent.GUILD_MEMBERS),
        )

    async def add_reaction(
        self, channel_id: int, message_id: int, user_id: int, emoji: str | int
    ) -> None:
        """A user reacts: MESSAGE_REACTION_ADD. ``emoji`` is a unicode emoji or the id of
        an emoji made with ``add_emoji``."""
        channel = self._channel(channel_id)
        message = self._message(channel_id, message_id)
        if isinstance(emoji, int):
            custom = self.world.emojis[emoji]
            emoji_data: JSON = {"id": str(custom.id), "name": custom.name}
        else:
            emoji_data = {"id": None, "name": emoji}
        reaction = next((r for r in message["reactions"] if r["emoji"] == emoji_data), None)
        if reaction is None:
            reaction = {
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "me": False,
                "me_burst": False,
                "burst_colors": [],
                "emoji": emoji_data,
            }
            message["reactions"].append(reaction)
        reaction["count"] += 1
        reaction["count_details"]["normal"] += 1
        event: JSON = {
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "message_author_id": message["author"]["id"],
            "emoji": emoji_data,
            "burst": False,
            "type": 0,
        }
        if channel.guild_id is not None:
            event["guild_id"] = str(channel.guild_id)
            member = self.world.members.get((channel.guild_id, user_id))
            if member is not None:
                event["member"] = member.payload(self.world)
        await self.gateway.dispatch(
            "MESSAGE_REACTION_ADD",
            event,
            guild_id=channel.guild_id,
            transform=requires(
                Intent.GUILD_MESSAGE_REACTIONS
                if channel.guild_id is not None
                else Intent.DIRECT_MESSAGE_REACTIONS
            ),
        )

    async def remove_guild(self, guild_id: int) -> None:
        """The bot is removed from the guild: GUILD_DELETE (-> ``on_guild_remove``)."""
        world = self.world
        del world.guilds[guild_id]
        for key in [k for k in world.members if k[0] == guild_id]:
            del world.members[key]
        await self.gateway.dispatch("GUILD_DELETE", {"id": str(guild_id)}, guild_id=guild_id)

    async def invoke_command(
        self,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[JSON] | None = None,
        *,
        subcommand_group: str | None = None,
        subcommand: str | None = None,
    ) -> Interaction:
        """A user runs a synced slash command: INTERACTION_CREATE. ``options`` are
        ``[{"name": ..., "value": ...}]``; their types come from the synced command (user,
        channel, role and mentionable options get ``resolved`` data). The member's
        ``permissions`` are computed from roles, overwrites, administrator and ownership."""
        scoped = self.commands.get(guild_id, []) if guild_id is not None else []
        command = next(
            (c for c in [*scoped, *self.commands.get(None, [])] if c["name"] == name), None
        )
        if command is None:
            raise LookupError(f"/{name} is not synced (synced: {self.commands!r})")
        interaction_id = self.world.ids.next()
        token = secrets.token_urlsafe(24)
        payload = build_interaction(
            self,
            interaction_id=interaction_id,
            token=token,
            command=command,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            options=options or [],
            subcommand_group=subcommand_group,
            subcommand=subcommand,
        )
        interaction = Interaction(
            interaction_id, token, guild_id, channel_id, user_id, payload, self.changes
        )
        self.interactions[interaction_id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        return interaction

    async def dispatch(self, event: str, data: JSON, *, guild_id: int | None) -> None:
        """Send any gateway event as is (for events this class has no helper for)."""
        await self.gateway.dispatch(event, data, guild_id=guild_id)

    async def disconnect(
        self,
        *,
        resume: bool = True,
        abrupt: bool = False,
        wait: bool = True,
        timeout: float = 10,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> None:
        """Drop every gateway socket (close code 4000, or ``abrupt``: the TCP connection just
        dies). The client reconnects and RESUMEs; events it had not acknowledged are replayed
        before RESUMED. ``resume=False`` forgets the sessions: RESUME gets INVALID_SESSION and
        the client identifies again. ``wait``: return once every dropped session is back."""
        before = self.gateway.resumes + self.gateway.identifies
        dropped = await self.gateway.drop(resume=resume, abrupt=abrupt)
        if wait and dropped:
            await self._wait_back(before + dropped, timeout)

    @contextlib.asynccontextmanager
    async def disconnected(
        self,
        *,
        abrupt: bool = False,
        timeout: float = 10,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> AsyncIterator[None]:
        """Inside the block the bot is offline (its reconnect is held at the door); events
        sent meanwhile are replayed when it RESUMEs on exit, which waits for that."""
        before = self.gateway.resumes + self.gateway.identifies
        self.gateway.open.clear()
        try:
            dropped = await self.gateway.drop(resume=True, abrupt=abrupt)
            yield
        finally:
            self.gateway.open.set()
        if dropped:
            await self._wait_back(before + dropped, timeout)

    async def _wait_back(self, target: int, timeout: float) -> None:  # noqa: ASYNC109 (the test API takes timeouts)
        await self.changes.wait_for(
            lambda: True if self.gateway.resumes + self.gateway.identifies >= target else None,
            timeout=timeout,
            describe=lambda: (
                f"the bot did not come back (resumes={self.gateway.resumes}, "
                f"identifies={self.gateway.identifies}, invalid={self.gateway.invalidated})"
            ),
        )

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        code: int = 0,
        message: str = "500: Internal Server Error",
        *,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` REST calls matching ``method`` ("*" for any) and ``path_regex``
        (full match, path under /api/v10) fail with ``status`` and Discord's error body;
        ``status=429`` with ``retry_after`` answers a rate limit (Retry-After header)."""
        if status == 429 and retry_after is None:
            retry_after = 0.05
        if status == 429 and message.startswith("500"):
            message = "You are being rate limited."
        self.failures.append(
            InjectedFailure(
                method.upper(), re.compile(path_regex), status, code, message, times, retry_after
            )
        )
