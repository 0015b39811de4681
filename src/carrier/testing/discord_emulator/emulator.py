"""``DiscordEmulator``: the public face of the emulated Discord (see the package docstring)."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from carrier.testing.discord_emulator.gateway import Gateway, GatewaySession, requires
from carrier.testing.discord_emulator.interactions import build_interaction
from carrier.testing.discord_emulator.messages import USER_MENTION, MessageFactory
from carrier.testing.discord_emulator.model import (
    DEFAULT_EVERYONE_PERMISSIONS,
    JSON,
    THREAD_KINDS,
    Channel,
    Emoji,
    Guild,
    Intent,
    Member,
    Overwrite,
    Permission,
    Role,
    User,
    World,
    iso_now,
)
from carrier.testing.discord_emulator.records import Changes, Interaction, RecordedRequest
from carrier.testing.discord_emulator.rest import InjectedFailure, RestApi
from carrier.testing.loopback import LoopbackServer

_UNSET: Any = object()
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS


class DiscordEmulator(LoopbackServer):
    """A local Discord (gateway websocket + REST API v10) on 127.0.0.1 for an unmodified
    discord.py client. Build the world with ``add_*``, drive the bot with ``send_message`` /
    ``invoke_command`` / ``disconnect``..., and inspect or await what the bot did."""

    def __init__(
        self,
        *,
        bot_user_id: int | None = None,
        bot_name: str = "Finnegan",
        token: str | None = None,
        recommended_shards: int = 1,
    ) -> None:
        super().__init__(host="127.0.0.1", port=0, description="DiscordEmulator")
        self.world = World()
        self.bot_user_id: int = bot_user_id if bot_user_id is not None else self.world.ids.next()
        self.application_id: int = self.bot_user_id
        self.world.users[self.bot_user_id] = User(self.bot_user_id, bot_name, bot=True)
        self.recommended_shards = recommended_shards
        self.changes = Changes()
        self.factory = MessageFactory(self.world, self.bot_user_id)
        self.gateway = Gateway(
            self.world,
            bot_user_id=self.bot_user_id,
            token=token,
            changes=self.changes,
            resume_url=lambda: self.url.replace("http://", "ws://") + "/resume-gateway",
        )
        self.token = token
        # What the bot did.
        self.rest_log: list[RecordedRequest] = []
        self.typing: list[int] = []
        self.commands: dict[int | None, list[JSON]] = {}
        self.interactions: dict[int, Interaction] = {}
        self.reactions: list[tuple[int, int, str]] = []  # (channel, message, emoji) by the bot
        self.deleted_messages: list[JSON] = []
        self.audit_log: list[JSON] = []
        # Tracebacks of requests the handlers could not process (answered 400 50035).
        self.server_errors: list[str] = []
        self._returned_messages: set[str] = set()
        self._by_author: dict[str, list[JSON]] = {}  # author id -> messages, posting order
        self._author_cursor: dict[str, int] = {}
        self._returned_requests: set[int] = set()
        self._returned_presences: set[int] = set()
        self._dm_channels: dict[int, int] = {}
        self.closed_dms: set[int] = set()  # users whose DMs refuse the bot (403 50007)
        self._rest = RestApi(self)

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._rest.middleware], client_max_size=64 * 2**20)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume-gateway", self.gateway.handle)
        self._rest.add_routes(app.router)
        return app

    async def stop(self) -> None:
        await self.gateway.close_all()
        await super().stop()

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/gateway"

    @property
    def messages(self) -> dict[int, list[JSON]]:
        """Every message in every channel (by anyone), oldest first, keyed by channel id."""
        return self.world.messages

    @property
    def presences(self) -> list[JSON]:
        """The ``d`` of every op 3 (presence update) the bot sent."""
        return self.gateway.presences

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this emulator."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = f"{self.url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # world building ----------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False, global_name: str | None = None) -> User:
        user = User(self.world.ids.next(), name, bot=bot, global_name=global_name)
        self.world.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner_id: int | None = None,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        bot_role_position: int = 1,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
    ) -> Guild:
        """A guild the bot is in: an @everyone role, the bot's managed role (``bot_permissions``
        at ``bot_role_position``), the owner and the bot as members. Dispatches GUILD_CREATE
        if the bot is connected."""
        world = self.world
        guild_id = world.ids.next()
        if owner_id is None:
            owner_id = self.add_user(f"{name} owner").id
        bot_role_id = world.ids.next()
        guild = Guild(guild_id, name, owner_id, bot_role_id)
        world.guilds[guild_id] = guild
        world.roles[guild_id] = Role(guild_id, guild_id, "@everyone", everyone_permissions, 0)
        world.roles[bot_role_id] = Role(
            bot_role_id,
            guild_id,
            self.world.users[self.bot_user_id].name,
            bot_permissions,
            bot_role_position,
            managed=True,
        )
        world.members[(guild_id, owner_id)] = Member(guild_id, owner_id)
        world.members[(guild_id, self.bot_user_id)] = Member(
            guild_id, self.bot_user_id, roles=[bot_role_id]
        )
        for session in self.gateway.sessions:
            if session.alive and session.covers(guild_id):
                payload = world.guild_payload(
                    guild_id, full=True, members=session.has(Intent.GUILD_MEMBERS)
                )
                # A guild joined mid-session comes without "unavailable" (-> on_guild_join).
                del payload["unavailable"]
                session.append("GUILD_CREATE", payload)
                self.gateway._spawn(self.gateway.flush(session))
        return guild

    def add_role(
        self, guild_id: int, name: str, *, permissions: int = 0, position: int = 1
    ) -> Role:
        role = Role(self.world.ids.next(), guild_id, name, permissions, position)
        self.world.roles[role.id] = role
        self.gateway.dispatch_nowait(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(guild_id), "role": role.payload()},
            guild_id=guild_id,
        )
        return role

    def update_role(
        self, role_id: int, *, permissions: int | None = None, position: int | None = None
    ) -> Role:
        """Change a role (e.g. the guild's ``bot_role_id``); dispatches GUILD_ROLE_UPDATE."""
        role = self.world.roles[role_id]
        if permissions is not None:
            role.permissions = permissions
        if position is not None:
            role.position = position
        self.gateway.dispatch_nowait(
            "GUILD_ROLE_UPDATE",
            {"guild_id": str(role.guild_id), "role": role.payload()},
            guild_id=role.guild_id,
        )
        return role

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        kind: str = "text",
        parent_id: int | None = None,
        bot_can_send: bool = True,
        bot_can_view: bool = True,
        topic: str | None = None,
    ) -> Channel:
        """A channel; ``kind`` is text, voice, category, news, forum, thread or
        private_thread (threads need ``parent_id``; without one a text parent is made).
        ``bot_can_send=False`` adds a member overwrite denying the bot SEND_MESSAGES (and
        SEND_MESSAGES_IN_THREADS); ``bot_can_view=False`` denies VIEW_CHANNEL."""
        world = self.world
        if kind in THREAD_KINDS and parent_id is None:
            parent_id = self.add_channel(guild_id, f"{name}-parent").id
        overwrites = []
        deny = 0
        if not bot_can_send:
            deny |= Permission.SEND_MESSAGES | Permission.SEND_MESSAGES_IN_THREADS
        if not bot_can_view:
            deny |= Permission.VIEW_CHANNEL
        if deny and kind not in THREAD_KINDS:
            overwrites.append(Overwrite(self.bot_user_id, 1, deny=int(deny)))
        channel = Channel(
            world.ids.next(),
            guild_id,
            name,
            kind=kind,
            parent_id=parent_id,
            position=len(world.guild_channels(guild_id)),
            overwrites=overwrites,
            topic=topic,
            owner_id=world.guilds[guild_id].owner_id if kind in THREAD_KINDS else None,
        )
        if deny and kind in THREAD_KINDS and parent_id is not None:
            world.channels[parent_id].overwrites.append(
                Overwrite(self.bot_user_id, 1, deny=int(deny))
            )
        world.channels[channel.id] = channel
        world.messages.setdefault(channel.id, [])
        payload = channel.payload(world)
        if channel.is_thread:
            self.gateway.dispatch_nowait(
                "THREAD_CREATE", payload | {"newly_created": True}, guild_id=guild_id
            )
        else:
            self.gateway.dispatch_nowait("CHANNEL_CREATE", payload, guild_id=guild_id)
        return channel

    def add_member(
        self, guild_id: int, user_id: int, *, roles: Sequence[int] = (), nick: str | None = None
    ) -> Member:
        member = Member(guild_id, user_id, roles=list(roles), nick=nick)
        self.world.members[(guild_id, user_id)] = member
        self.gateway.dispatch_nowait(
            "GUILD_MEMBER_ADD",
            member.payload(self.world) | {"guild_id": str(guild_id)},
            guild_id=guild_id,
            transform=requires(Intent.GUILD_MEMBERS),
        )
        return member

    def add_emoji(self, guild_id: int, name: str, *, animated: bool = False) -> Emoji:
        emoji = Emoji(self.world.ids.next(), guild_id, name, animated)
        self.world.emojis[emoji.id] = emoji
        self.gateway.dispatch_nowait(
            "GUILD_EMOJIS_UPDATE",
            {
                "guild_id": str(guild_id),
                "emojis": [e.payload() for e in self.world.guild_emojis(guild_id)],
            },
            guild_id=guild_id,
            transform=requires(Intent.GUILD_EXPRESSIONS),
        )
        return emoji

    def dm_channel(self, user_id: int) -> Channel:
        """The DM channel between the bot and ``user_id`` (made on first use)."""
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel = Channel(self.world.ids.next(), None, "", kind="dm", recipient_id=user_id)
            self.world.channels[channel.id] = channel
            self.world.messages.setdefault(channel.id, [])
            self._dm_channels[user_id] = channel_id = channel.id
        return self.world.channels[channel_id]

    # events sent to the bot --------------------------------------------------------------

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
        self._rest.failures.append(
            InjectedFailure(
                method.upper(), re.compile(path_regex), status, code, message, times, retry_after
            )
        )

    async def settle(self) -> None:
        """Wait until every queued gateway frame is written to the bot's sockets."""
        await self.gateway.settle()

    # waiting for the bot -----------------------------------------------------------------

    async def wait_until_ready(self, timeout: float = 10, *, shards: int = 1) -> None:  # noqa: ASYNC109 (the test API takes timeouts)
        """The bot identified (``shards`` sessions) and got its guilds."""
        await self.changes.wait_for(
            lambda: True if len(self.gateway.attached_sessions()) >= shards else None,
            timeout=timeout,
            describe=lambda: f"{len(self.gateway.attached_sessions())} sessions identified",
        )
        await self.settle()

    async def wait_for_message(
        self,
        *,
        channel_id: int | None = None,
        author_id: int | None = None,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> JSON:
        """The oldest message (in posting order, deleted ones included) not yet returned by
        this method, by ``author_id`` (default: the bot; interaction responses and follow-ups
        count) in ``channel_id`` (default: any), matching ``predicate``. The bot's messages
        carry the ``allowed_mentions`` it sent."""
        author = str(author_id if author_id is not None else self.bot_user_id)

        def find() -> JSON | None:
            posted = self._by_author.get(author, [])
            start = self._author_cursor.get(author, 0)
            while start < len(posted) and posted[start]["id"] in self._returned_messages:
                start += 1  # skip the prefix already handed out
            self._author_cursor[author] = start
            for message in posted[start:]:
                if message["id"] in self._returned_messages:
                    continue
                if channel_id is not None and message["channel_id"] != str(channel_id):
                    continue
                if predicate is not None and not predicate(message):
                    continue
                self._returned_messages.add(message["id"])
                return message
            return None

        def describe() -> str:
            seen = [
                (cid, m["author"]["username"], m["content"][:80])
                for cid, ms in self.world.messages.items()
                for m in ms[-5:]
            ]
            return f"no matching message within {timeout}s; recent: {seen!r}"

        return await self.changes.wait_for(find, timeout=timeout, describe=describe)

    async def wait_for_request(
        self,
        method: str,
        path_regex: str,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
        *,
        status: int | None = None,
    ) -> RecordedRequest:
        """The oldest REST request not yet returned by this method whose method matches,
        whose path (relative to /api/v10) fully matches ``path_regex`` and, if given, whose
        answer had ``status``."""
        pattern = re.compile(path_regex)

        def find() -> RecordedRequest | None:
            for index, record in enumerate(self.rest_log):
                if index in self._returned_requests:
                    continue
                if status is not None and record.status != status:
                    continue
                if record.method == method.upper() and pattern.fullmatch(record.path):
                    self._returned_requests.add(index)
                    return record
            return None

        return await self.changes.wait_for(
            find,
            timeout=timeout,
            describe=lambda: (
                f"no {method} {path_regex}; log: "
                + repr([(r.method, r.path, r.status) for r in self.rest_log[-15:]])
            ),
        )

    async def wait_for_presence(
        self,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> JSON:
        """The oldest presence update not yet returned by this method matching ``predicate``."""

        def find() -> JSON | None:
            for index, presence in enumerate(self.gateway.presences):
                if index in self._returned_presences:
                    continue
                if predicate is None or predicate(presence):
                    self._returned_presences.add(index)
                    return presence
            return None

        return await self.changes.wait_for(
            find, timeout=timeout, describe=lambda: f"presences: {self.gateway.presences!r}"
        )

    # shared by the REST handlers ---------------------------------------------------------

    def _channel(self, channel_id: int | None) -> Channel:
        channel = self.world.channels.get(channel_id) if channel_id is not None else None
        if channel is None:
            raise KeyError(f"no channel {channel_id}")
        return channel

    def _message(self, channel_id: int, message_id: int) -> JSON:
        message = self.world.find_message(channel_id, message_id)
        if message is None:
            raise KeyError(f"no message {message_id} in channel {channel_id}")
        return message

    async def publish_message(self, channel: Channel, message: JSON) -> None:
        """Store ``message`` and send MESSAGE_CREATE (the bot's own messages too)."""
        self.world.store_message(message)
        self._by_author.setdefault(message["author"]["id"], []).append(message)
        channel.last_message_id = int(message["id"])
        self.changes.notify()
        await self.gateway.dispatch(
            "MESSAGE_CREATE", message, guild_id=channel.guild_id, transform=self.message_view
        )

    async def remove_message(self, message: JSON) -> None:
        channel_id = int(message["channel_id"])
        self.world.drop_message(message)
        self.deleted_messages.append(message)
        self.changes.notify()
        data: JSON = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        await self.gateway.dispatch(
            "MESSAGE_DELETE",
            data,
            guild_id=self.world.channels[channel_id].guild_id,
            transform=self._message_event_allowed,
        )

    async def dispatch_member_update(self, member: Member) -> None:
        await self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE",
            member.payload(self.world) | {"guild_id": str(member.guild_id)},
            guild_id=member.guild_id,
            transform=requires(Intent.GUILD_MEMBERS),
        )

    def _message_event_allowed(self, session: GatewaySession, data: JSON) -> JSON | None:
        intent = Intent.GUILD_MESSAGES if "guild_id" in data else Intent.DIRECT_MESSAGES
        return data if session.has(intent) else None

    def message_view(self, session: GatewaySession, data: JSON) -> JSON | None:
        """What a session sees of a message: nothing without GUILD_MESSAGES/DIRECT_MESSAGES;
        without MESSAGE_CONTENT, empty content unless it is a DM, the bot's own message or
        mentions the bot (as Discord does)."""
        if self._message_event_allowed(session, data) is None:
            return None
        view = {k: v for k, v in data.items() if k != "allowed_mentions"}
        if session.has(Intent.MESSAGE_CONTENT) or "guild_id" not in data:
            return view
        bot = str(self.bot_user_id)
        if view["author"]["id"] == bot or any(m["id"] == bot for m in view["mentions"]):
            return view
        view |= {"content": "", "embeds": [], "attachments": [], "components": []}
        view.pop("poll", None)
        return view


__all__ = ["DiscordEmulator"]
