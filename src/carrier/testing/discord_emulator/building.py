"""Building the emulated world: users, guilds, roles, channels, members and emojis, before
or after the bot connects (afterwards the matching gateway events are sent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from carrier.testing.discord_emulator.core import EmulatorCore
from carrier.testing.discord_emulator.flags import DEFAULT_EVERYONE_PERMISSIONS, Intent, Permission
from carrier.testing.discord_emulator.gateway import requires
from carrier.testing.discord_emulator.model import (
    THREAD_KINDS,
    Channel,
    Emoji,
    Guild,
    Member,
    Overwrite,
    Role,
    User,
)

DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS


class WorldBuilding(EmulatorCore):
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

    def add_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0
    ) -> Channel:
        """Set the channel's permission overwrite for a role (``target_id`` a role of the
        guild; the guild id is @everyone) or a member; dispatches CHANNEL_UPDATE."""
        channel = self.world.channels[channel_id]
        if channel.guild_id is None or channel.is_thread:
            raise ValueError("overwrites belong to guild channels (threads use their parent's)")
        role = self.world.roles.get(target_id)
        kind: Literal[0, 1] = 0 if role is not None and role.guild_id == channel.guild_id else 1
        channel.overwrites = [o for o in channel.overwrites if o.id != target_id]
        channel.overwrites.append(Overwrite(target_id, kind, allow=allow, deny=deny))
        self.gateway.dispatch_nowait(
            "CHANNEL_UPDATE", channel.payload(self.world), guild_id=channel.guild_id
        )
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
