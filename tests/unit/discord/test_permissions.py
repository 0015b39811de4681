from __future__ import annotations

import discord
import pytest

from carrier.clients.discord.permissions import Actor, is_admin, moderation_refusal

MOD = discord.Permissions(kick_members=True, ban_members=True, moderate_members=True)
NONE = discord.Permissions.none()


def actor(id: int, perms: discord.Permissions = NONE, top: int = 1, owner: bool = False) -> Actor:
    return Actor(id=id, permissions=perms, top_role_position=top, is_owner=owner)


BOT = actor(99, MOD, top=5)


def test_allowed_when_everyone_has_the_permission_and_ranks_above() -> None:
    assert moderation_refusal("kick", actor(1, MOD, 3), BOT, actor(2, NONE, 1)) is None
    assert moderation_refusal("timeout", actor(1, MOD, 3), BOT, actor(2, NONE, 1)) is None
    assert moderation_refusal("unban", actor(1, MOD, 3), BOT, None) is None


def test_invoker_without_permission_is_refused() -> None:
    refusal = moderation_refusal("ban", actor(1, NONE, 3), BOT, actor(2))
    assert refusal == "You need the Ban Members permission to ban members."


def test_bot_without_permission_says_so() -> None:
    bot = actor(99, discord.Permissions(kick_members=True), top=5)
    refusal = moderation_refusal("timeout", actor(1, MOD, 3), bot, actor(2))
    assert refusal is not None and refusal.startswith("I need the Timeout Members permission")


def test_target_ranking_equal_or_higher_than_the_invoker_is_refused() -> None:
    refusal = moderation_refusal("kick", actor(1, MOD, 3), BOT, actor(2, NONE, 3))
    assert refusal is not None and "equal to or above yours" in refusal


def test_target_ranking_above_the_bot_is_refused() -> None:
    refusal = moderation_refusal("kick", actor(1, MOD, 9, owner=True), BOT, actor(2, NONE, 6))
    assert refusal is not None and "above mine" in refusal


def test_owner_and_self_are_protected() -> None:
    assert "owner" in (moderation_refusal("ban", actor(1, MOD, 4), BOT, actor(2, owner=True)) or "")
    assert "yourself" in (moderation_refusal("kick", actor(1, MOD, 4), BOT, actor(1)) or "")
    assert "myself" in (moderation_refusal("kick", actor(1, MOD, 4), BOT, actor(99)) or "")


def test_owner_and_administrator_need_no_specific_permission() -> None:
    owner = actor(1, NONE, 0, owner=True)
    assert moderation_refusal("kick", owner, BOT, actor(2, NONE, 1)) is None
    admin = actor(1, discord.Permissions(administrator=True), 4)
    assert moderation_refusal("kick", admin, BOT, actor(2, NONE, 1)) is None


def test_administrators_cannot_be_timed_out() -> None:
    target = actor(2, discord.Permissions(administrator=True), 1)
    refusal = moderation_refusal("timeout", actor(1, MOD, 4), BOT, target)
    assert refusal == "Administrators cannot be timed out."


def test_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown moderation action"):
        moderation_refusal("smite", actor(1), BOT, None)


def test_admin_by_permission_role_or_user() -> None:
    assert is_admin(1, discord.Permissions(manage_guild=True), [])
    assert is_admin(1, discord.Permissions(administrator=True), [])
    assert not is_admin(1, NONE, [5])
    assert is_admin(1, NONE, [], admin_user_ids=["1"])
    assert is_admin(1, NONE, [5], admin_role_ids=["5"])
    assert is_admin(1, NONE, [7], guild_admin_role_id="7")
    assert not is_admin(1, NONE, [7], guild_admin_role_id="8")
