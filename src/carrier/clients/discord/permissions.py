"""Who may do what: admin commands and moderation, checked on every call.

Pure functions over plain values (an :class:`Actor` is a member reduced to its id, its
guild permissions and its highest role), so every rule is testable without Discord.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import discord

MODERATION_PERMISSIONS = {
    "kick": "kick_members",
    "ban": "ban_members",
    "unban": "ban_members",
    "timeout": "moderate_members",
}

_PERMISSION_WORDS = {
    "kick_members": "Kick Members",
    "ban_members": "Ban Members",
    "moderate_members": "Timeout Members",
    "manage_guild": "Manage Server",
}


@dataclass(frozen=True, slots=True)
class Actor:
    """A guild member as the permission rules see it."""

    id: int
    permissions: discord.Permissions
    top_role_position: int
    is_owner: bool = False

    @classmethod
    def of(cls, member: discord.Member) -> Actor:
        return cls(
            id=member.id,
            permissions=member.guild_permissions,
            top_role_position=member.top_role.position,
            is_owner=member.guild.owner_id == member.id,
        )


def is_admin(
    user_id: int,
    permissions: discord.Permissions,
    role_ids: Collection[int],
    *,
    admin_user_ids: Collection[str] = (),
    admin_role_ids: Collection[str] = (),
    guild_admin_role_id: str | None = None,
) -> bool:
    """Manage Server (or Administrator), or a configured admin user or role, or the role
    the guild's settings name."""
    if permissions.manage_guild or permissions.administrator:
        return True
    if str(user_id) in admin_user_ids:
        return True
    roles = {str(r) for r in role_ids}
    if roles & set(admin_role_ids):
        return True
    return guild_admin_role_id is not None and guild_admin_role_id in roles


def moderation_refusal(action: str, invoker: Actor, bot: Actor, target: Actor | None) -> str | None:
    """Why ``invoker`` may not ``action`` ``target`` through the bot; None when allowed.

    ``target`` is None when the user is not a member (a ban by id, an unban): then only
    the permissions count.
    """
    needed = MODERATION_PERMISSIONS.get(action)
    if needed is None:
        raise ValueError(f"unknown moderation action {action!r}")
    words = _PERMISSION_WORDS[needed]
    if not _has(invoker, needed):
        return f"You need the {words} permission to {action} members."
    if not _has(bot, needed):
        return f"I need the {words} permission to {action} members; ask an admin to grant it."
    if target is None:
        return None
    if target.id == invoker.id:
        return f"You cannot {action} yourself."
    if target.id == bot.id:
        return f"I cannot {action} myself."
    if target.is_owner:
        return f"The server owner cannot be {_past(action)}."
    if not invoker.is_owner and target.top_role_position >= invoker.top_role_position:
        return f"You cannot {action} someone whose highest role is equal to or above yours."
    if target.top_role_position >= bot.top_role_position:
        return f"I cannot {action} someone whose highest role is equal to or above mine."
    if action == "timeout" and target.permissions.administrator:
        return "Administrators cannot be timed out."
    return None


def _has(actor: Actor, permission: str) -> bool:
    return (
        actor.is_owner or actor.permissions.administrator or getattr(actor.permissions, permission)
    )


def _past(action: str) -> str:
    return {"kick": "kicked", "ban": "banned", "unban": "unbanned", "timeout": "timed out"}[action]
