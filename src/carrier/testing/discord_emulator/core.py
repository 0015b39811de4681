"""The state every part of the emulator shares (the world, the gateway, what the bot did)
and the few operations the REST handlers and the test-facing methods both use."""

from __future__ import annotations

from collections.abc import Callable

from carrier.testing.discord_emulator.flags import Intent
from carrier.testing.discord_emulator.gateway import Gateway, GatewaySession, requires
from carrier.testing.discord_emulator.messages import MessageFactory
from carrier.testing.discord_emulator.model import JSON, Channel, Member, User, World
from carrier.testing.discord_emulator.records import Changes, Interaction, RecordedRequest
from carrier.testing.discord_emulator.rest import InjectedFailure


class EmulatorCore:
    """The emulator's state; :class:`DiscordEmulator` adds the server and the test API."""

    def __init__(
        self,
        *,
        bot_user_id: int | None,
        bot_name: str,
        token: str | None,
        recommended_shards: int,
        resume_url: Callable[[], str],
    ) -> None:
        self.world = World()
        self.bot_user_id: int = bot_user_id if bot_user_id is not None else self.world.ids.next()
        self.application_id: int = self.bot_user_id
        self.world.users[self.bot_user_id] = User(self.bot_user_id, bot_name, bot=True)
        self.recommended_shards = recommended_shards
        self.token = token
        self.changes = Changes()
        self.factory = MessageFactory(self.world, self.bot_user_id)
        self.gateway = Gateway(
            self.world,
            bot_user_id=self.bot_user_id,
            token=token,
            changes=self.changes,
            resume_url=resume_url,
        )
        # What the bot did.
        self.rest_log: list[RecordedRequest] = []
        self.typing: list[int] = []
        self.commands: dict[int | None, list[JSON]] = {}
        self.interactions: dict[int, Interaction] = {}
        self.reactions: list[tuple[int, int, str]] = []  # (channel, message, emoji) by the bot
        self.deleted_messages: list[JSON] = []
        self.audit_log: list[JSON] = []
        # Requests the emulator could not serve: tracebacks of bodies the handlers could not
        # read (answered 400 50035) and routes it does not emulate (answered 404).
        self.server_errors: list[str] = []
        self.closed_dms: set[int] = set()  # users whose DMs refuse the bot (403 50007)
        self.failures: list[InjectedFailure] = []
        self._by_author: dict[str, list[JSON]] = {}  # author id -> messages, posting order
        self._dm_channels: dict[int, int] = {}

    @property
    def messages(self) -> dict[int, list[JSON]]:
        """Every message in every channel (by anyone), oldest first, keyed by channel id."""
        return self.world.messages

    @property
    def presences(self) -> list[JSON]:
        """The ``d`` of every op 3 (presence update) the bot sent."""
        return self.gateway.presences

    def dm_channel(self, user_id: int) -> Channel:
        """The DM channel between the bot and ``user_id`` (made on first use)."""
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel = Channel(self.world.ids.next(), None, "", kind="dm", recipient_id=user_id)
            self.world.channels[channel.id] = channel
            self.world.messages.setdefault(channel.id, [])
            self._dm_channels[user_id] = channel_id = channel.id
        return self.world.channels[channel_id]

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

    async def settle(self) -> None:
        """Wait until every queued gateway frame is written to the bot's sockets."""
        await self.gateway.settle()
