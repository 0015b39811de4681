"""The emulated Discord world: users, guilds, roles, channels, members, emojis and messages,
their JSON payloads as Discord sends them (snowflakes as strings), and Discord's permission
arithmetic (base permissions from roles, channel overwrites, role hierarchy)."""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from carrier.testing.discord_emulator.flags import (
    ALL_CHANNEL_PERMISSIONS,
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    NEED_SEND_MESSAGES,
    TIMEOUT_KEEPS,
    VOICE_PERMISSIONS,
)
from carrier.testing.discord_emulator.flags import Intent as Intent  # re-exported
from carrier.testing.discord_emulator.flags import Permission as Permission  # re-exported

JSON = dict[str, Any]
DISCORD_EPOCH_MS = 1_420_070_400_000

ChannelKind = Literal["text", "voice", "category", "news", "thread", "private_thread", "forum"]
CHANNEL_TYPES: dict[str, int] = {
    "text": 0,
    "dm": 1,
    "voice": 2,
    "category": 4,
    "news": 5,
    "thread": 11,
    "private_thread": 12,
    "forum": 15,
}
THREAD_KINDS = frozenset({"thread", "private_thread"})
TEXT_KINDS = frozenset({"text", "news", "forum", "thread", "private_thread"})


class SnowflakeFactory:
    """Increasing snowflakes whose timestamp part advances 1 ms per id, so consecutive guild
    ids land on different shards (``(id >> 22) % shard_count``) and ``created_at`` is near
    the time the object was made."""

    def __init__(self) -> None:
        self._base_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._counter = itertools.count(1)

    def next(self) -> int:
        n = next(self._counter)
        return ((self._base_ms + n) << 22) | (n & 0xFFF)


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def sf(value: int | str | None) -> str | None:
    """A snowflake as Discord sends it: a string (discord.py sends ints in bodies)."""
    return None if value is None else str(value)


@dataclass(slots=True)
class User:
    id: int
    name: str
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
        }


@dataclass(slots=True)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 1
    managed: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(slots=True)
class Overwrite:
    id: int
    type: Literal[0, 1]  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass(slots=True)
class Channel:
    id: int
    guild_id: int | None
    name: str
    kind: str = "text"
    parent_id: int | None = None
    position: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)
    topic: str | None = None
    owner_id: int | None = None  # threads
    archived: bool = False
    locked: bool = False
    invitable: bool = True
    thread_members: set[int] = field(default_factory=set)
    recipient_id: int | None = None  # DM channels
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.kind in THREAD_KINDS

    def payload(self, world: World) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "type": CHANNEL_TYPES[self.kind],
            "last_message_id": sf(self.last_message_id),
            "flags": 0,
        }
        if self.kind == "dm":
            recipient = world.users[self.recipient_id] if self.recipient_id else None
            data["recipients"] = [recipient.payload()] if recipient else []
            return data
        data |= {
            "guild_id": str(self.guild_id),
            "name": self.name,
            "parent_id": sf(self.parent_id),
            "rate_limit_per_user": 0,
            "nsfw": False,
        }
        if self.is_thread:
            data |= {
                "owner_id": sf(self.owner_id),
                "message_count": 0,
                "member_count": len(self.thread_members),
                "total_message_sent": 0,
                "thread_metadata": {
                    "archived": self.archived,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_now(),
                    "locked": self.locked,
                    "invitable": self.invitable,
                },
            }
        else:
            data |= {
                "position": self.position,
                "permission_overwrites": [o.payload() for o in self.overwrites],
                "topic": self.topic,
            }
        return data


@dataclass(slots=True)
class Member:
    guild_id: int
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)
    communication_disabled_until: str | None = None

    def payload(self, world: World, *, with_user: bool = True) -> JSON:
        data: JSON = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": self.communication_disabled_until,
        }
        if with_user:
            data["user"] = world.users[self.user_id].payload()
        return data


@dataclass(slots=True)
class Emoji:
    id: int
    guild_id: int
    name: str
    animated: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "animated": self.animated,
            "roles": [],
            "require_colons": True,
            "managed": False,
            "available": True,
        }


@dataclass(slots=True)
class Guild:
    id: int
    name: str
    owner_id: int
    bot_role_id: int
    joined_at: str = field(default_factory=iso_now)

    @property
    def everyone_role_id(self) -> int:
        return self.id


@dataclass(slots=True)
class World:
    """Everything the emulated Discord knows, keyed by snowflake."""

    ids: SnowflakeFactory = field(default_factory=SnowflakeFactory)
    users: dict[int, User] = field(default_factory=dict)
    guilds: dict[int, Guild] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[tuple[int, int], Member] = field(default_factory=dict)
    emojis: dict[int, Emoji] = field(default_factory=dict)
    messages: dict[int, list[JSON]] = field(default_factory=dict)  # by channel, in id order
    message_index: dict[int, JSON] = field(default_factory=dict)  # by message id
    bans: dict[int, dict[int, str | None]] = field(default_factory=dict)

    # lookups -----------------------------------------------------------------------------

    def guild_roles(self, guild_id: int) -> list[Role]:
        return [r for r in self.roles.values() if r.guild_id == guild_id]

    def guild_channels(self, guild_id: int) -> list[Channel]:
        return [c for c in self.channels.values() if c.guild_id == guild_id]

    def guild_members(self, guild_id: int) -> list[Member]:
        return [m for (g, _), m in self.members.items() if g == guild_id]

    def guild_emojis(self, guild_id: int) -> list[Emoji]:
        return [e for e in self.emojis.values() if e.guild_id == guild_id]

    def find_message(self, channel_id: int, message_id: int) -> JSON | None:
        message = self.message_index.get(message_id)
        if message is None or message["channel_id"] != str(channel_id):
            return None
        return message

    def store_message(self, message: JSON) -> None:
        channel_messages = self.messages.setdefault(int(message["channel_id"]), [])
        message_id = int(message["id"])
        if not channel_messages or int(channel_messages[-1]["id"]) < message_id:
            channel_messages.append(message)
        else:  # built earlier, published later: keep id order
            bisect.insort(channel_messages, message, key=lambda m: int(m["id"]))
        self.message_index[message_id] = message

    def drop_message(self, message: JSON) -> None:
        channel_messages = self.messages[int(message["channel_id"])]
        message_id = int(message["id"])
        index = bisect.bisect_left(channel_messages, message_id, key=lambda m: int(m["id"]))
        if index < len(channel_messages) and channel_messages[index] is message:
            del channel_messages[index]
        self.message_index.pop(message_id, None)

    # payloads ----------------------------------------------------------------------------

    def guild_payload(self, guild_id: int, *, full: bool, members: bool = True) -> JSON:
        """``full``: the GUILD_CREATE form (channels, threads, members); ``members`` False
        leaves only the bot's own member, as Discord does without the GUILD_MEMBERS intent."""
        guild = self.guilds[guild_id]
        data: JSON = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "features": [],
            "roles": [r.payload() for r in self.guild_roles(guild_id)],
            "emojis": [e.payload() for e in self.guild_emojis(guild_id)],
            "stickers": [],
            "max_members": 500000,
            "vanity_url_code": None,
        }
        if full:
            all_members = self.guild_members(guild_id)
            sent = all_members if members else [m for m in all_members if self.users[m.user_id].bot]
            channels = self.guild_channels(guild_id)
            data |= {
                "joined_at": guild.joined_at,
                "large": False,
                "unavailable": False,
                "member_count": len(all_members),
                "members": [m.payload(self) for m in sent],
                "channels": [c.payload(self) for c in channels if not c.is_thread],
                "threads": [c.payload(self) for c in channels if c.is_thread and not c.archived],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        return data

    # permissions -------------------------------------------------------------------------

    def _role_permissions(self, guild_id: int, user_id: int) -> int:
        guild = self.guilds[guild_id]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get((guild_id, user_id))
        perms = self.roles[guild.everyone_role_id].permissions
        for role_id in member.roles if member else ():
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & Permission.ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def _timed_out(self, guild_id: int, user_id: int) -> bool:
        member = self.members.get((guild_id, user_id))
        if member is None or member.communication_disabled_until is None:
            return False
        until = datetime.fromisoformat(member.communication_disabled_until)
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return until > datetime.now(UTC)

    def base_permissions(self, guild_id: int, user_id: int) -> int:
        """Guild-wide permissions: @everyone and the member's roles; everything for the owner
        and administrators; only VIEW_CHANNEL and READ_MESSAGE_HISTORY while timed out."""
        perms = self._role_permissions(guild_id, user_id)
        if perms != ALL_PERMISSIONS and self._timed_out(guild_id, user_id):
            perms &= TIMEOUT_KEEPS
        return perms

    def channel_permissions(self, channel_id: int, user_id: int) -> int:
        """Discord's algorithm, step for step as discord.py's ``permissions_for``: base
        permissions, the @everyone, role and member overwrites of the channel (of the parent
        for a thread), the timeout mask, then the implicit rules (no SEND_MESSAGES: no embeds,
        files, TTS or @everyone; no VIEW_CHANNEL: no channel permissions) and, in text
        channels, no voice permissions."""
        channel = self.channels[channel_id]
        if channel.guild_id is None:
            return DEFAULT_EVERYONE_PERMISSIONS
        perms = self._role_permissions(channel.guild_id, user_id)
        if perms != ALL_PERMISSIONS:
            source = (
                self.channels[channel.parent_id]
                if channel.is_thread and channel.parent_id
                else channel
            )
            member = self.members.get((channel.guild_id, user_id))
            member_roles = set(member.roles) if member else set()
            overwrites = source.overwrites
            for o in overwrites:
                if o.type == 0 and o.id == channel.guild_id:
                    perms = (perms & ~o.deny) | o.allow
            allow = deny = 0
            for o in overwrites:
                if o.type == 0 and o.id in member_roles:
                    allow |= o.allow
                    deny |= o.deny
            perms = (perms & ~deny) | allow
            for o in overwrites:
                if o.type == 1 and o.id == user_id:
                    perms = (perms & ~o.deny) | o.allow
            if self._timed_out(channel.guild_id, user_id):
                perms &= TIMEOUT_KEEPS
        if not perms & Permission.SEND_MESSAGES:
            perms &= ~NEED_SEND_MESSAGES
        if not perms & Permission.VIEW_CHANNEL:
            perms &= ~ALL_CHANNEL_PERMISSIONS
        if channel.kind in TEXT_KINDS:
            perms &= ~VOICE_PERMISSIONS
        return perms

    def top_role_position(self, guild_id: int, user_id: int) -> int:
        member = self.members.get((guild_id, user_id))
        positions = [
            self.roles[r].position for r in (member.roles if member else ()) if r in self.roles
        ]
        return max(positions, default=0)

    def outranks(self, guild_id: int, actor_id: int, target_id: int) -> bool:
        """Whether ``actor`` may moderate ``target``: the owner outranks everyone, nobody
        outranks the owner, otherwise the actor's top role must be strictly higher."""
        owner = self.guilds[guild_id].owner_id
        if target_id == owner:
            return False
        if actor_id == owner:
            return True
        return self.top_role_position(guild_id, actor_id) > self.top_role_position(
            guild_id, target_id
        )
