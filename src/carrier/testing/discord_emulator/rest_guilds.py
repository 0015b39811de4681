"""REST: guilds, members and moderation (kick, ban, timeout, nick, roles) with Discord's
permission and role-hierarchy checks, audit-log reasons, and emojis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.flags import Intent, Permission
from carrier.testing.discord_emulator.gateway import requires
from carrier.testing.discord_emulator.model import JSON, Member
from carrier.testing.discord_emulator.rest import (
    REASON,
    Handler,
    body_of,
    guild_or_404,
    json_response,
    no_content,
    require_in_guild,
    snowflake,
)

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.emulator import DiscordEmulator

MAX_TIMEOUT = timedelta(days=28)
MAX_DELETE_MESSAGE_SECONDS = 604_800


def routes(emulator: DiscordEmulator) -> list[tuple[str, str, Handler]]:
    world = emulator.world
    bot_id = emulator.bot_user_id

    def member_or_404(guild_id: int, user_id: int) -> Member:
        member = world.members.get((guild_id, user_id))
        if member is None:
            raise errors.unknown("Member", errors.UNKNOWN_MEMBER)
        return member

    def target_user(request: web.Request) -> int:
        if request.match_info["user_id"] == "@me":
            return bot_id
        return snowflake(request, "user_id")

    def require_outranks(guild_id: int, target_id: int) -> None:
        if not world.outranks(guild_id, bot_id, target_id):
            raise errors.missing_permissions()

    def audit(request: web.Request, guild_id: int, action: str, target_id: int) -> None:
        emulator.audit_log.append(
            {
                "guild_id": guild_id,
                "action": action,
                "target_id": target_id,
                "user_id": bot_id,
                "reason": request[REASON],
            }
        )

    async def get_guild(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        data = world.guild_payload(guild_id, full=False)
        if request.query.get("with_counts") in ("true", "1", "True"):
            data["approximate_member_count"] = len(world.guild_members(guild_id))
            data["approximate_presence_count"] = 0
        return json_response(data)

    async def guild_channels(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        return json_response(
            [c.payload(world) for c in world.guild_channels(guild_id) if not c.is_thread]
        )

    async def guild_roles(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        return json_response([r.payload() for r in world.guild_roles(guild_id)])

    async def get_member(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        return json_response(member_or_404(guild_id, target_user(request)).payload(world))

    async def list_members(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        limit = int(request.query.get("limit", "1"))
        if not 1 <= limit <= 1000:
            raise errors.invalid_form("limit", "NUMBER_TYPE_MAX", "between 1 and 1000")
        after = int(request.query.get("after", "0"))
        members = sorted(world.guild_members(guild_id), key=lambda m: m.user_id)
        page = [m for m in members if m.user_id > after][:limit]
        return json_response([m.payload(world) for m in page])

    async def patch_member(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        user_id = target_user(request)
        member = member_or_404(guild_id, user_id)
        body = body_of(request)
        if "nick" in body:
            if user_id == bot_id:
                require_in_guild(emulator, guild_id, Permission.CHANGE_NICKNAME)
            else:
                require_in_guild(emulator, guild_id, Permission.MANAGE_NICKNAMES)
                require_outranks(guild_id, user_id)
            nick = body["nick"] or None
            if nick is not None and len(nick) > 32:
                raise errors.invalid_form("nick", "BASE_TYPE_MAX_LENGTH", "Must be 32 or fewer.")
        if "roles" in body:
            require_in_guild(emulator, guild_id, Permission.MANAGE_ROLES)
            new_roles = [int(r) for r in body["roles"] or []]
            for role_id in set(new_roles) ^ set(member.roles):
                check_role_assignable(guild_id, role_id)
        if "communication_disabled_until" in body:
            require_in_guild(emulator, guild_id, Permission.MODERATE_MEMBERS)
            require_outranks(guild_id, user_id)
            if world.base_permissions(guild_id, user_id) & Permission.ADMINISTRATOR:
                raise errors.missing_permissions()
            until = body["communication_disabled_until"]
            if until is not None:
                when = datetime.fromisoformat(str(until))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                if when - datetime.now(UTC) > MAX_TIMEOUT:
                    raise errors.invalid_form(
                        "communication_disabled_until",
                        "BASE_TYPE_BAD_DATETIME",
                        "Timeouts can be at most 28 days",
                    )
        if "nick" in body:
            member.nick = body["nick"] or None
        if "roles" in body:
            member.roles = [int(r) for r in body["roles"] or []]
        if "communication_disabled_until" in body:
            until = body["communication_disabled_until"]
            member.communication_disabled_until = str(until) if until is not None else None
            audit(request, guild_id, "timeout", user_id)
        elif body:
            audit(request, guild_id, "member_update", user_id)
        await emulator.dispatch_member_update(member)
        emulator.changes.notify()
        return json_response(member.payload(world))

    def check_role_assignable(guild_id: int, role_id: int) -> None:
        role = world.roles.get(role_id)
        if role is None or role.guild_id != guild_id:
            raise errors.unknown("Role", errors.UNKNOWN_ROLE)
        if role.managed or role_id == guild_id:
            raise errors.missing_permissions()
        owner = world.guilds[guild_id].owner_id
        if bot_id != owner and role.position >= world.top_role_position(guild_id, bot_id):
            raise errors.missing_permissions()

    async def member_role(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        member = member_or_404(guild_id, target_user(request))
        role_id = snowflake(request, "role_id")
        require_in_guild(emulator, guild_id, Permission.MANAGE_ROLES)
        check_role_assignable(guild_id, role_id)
        if request.method == "PUT" and role_id not in member.roles:
            member.roles.append(role_id)
        elif request.method == "DELETE" and role_id in member.roles:
            member.roles.remove(role_id)
        audit(request, guild_id, "member_role_update", member.user_id)
        await emulator.dispatch_member_update(member)
        emulator.changes.notify()
        return no_content()

    async def kick(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        user_id = target_user(request)
        require_in_guild(emulator, guild_id, Permission.KICK_MEMBERS)
        member_or_404(guild_id, user_id)
        require_outranks(guild_id, user_id)
        audit(request, guild_id, "kick", user_id)
        await emulator.remove_member(guild_id, user_id)
        emulator.changes.notify()
        return no_content()

    async def ban(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        user_id = snowflake(request, "user_id")
        require_in_guild(emulator, guild_id, Permission.BAN_MEMBERS)
        if user_id not in world.users:
            raise errors.unknown("User", errors.UNKNOWN_USER)
        if (guild_id, user_id) in world.members:
            require_outranks(guild_id, user_id)
        body = body_of(request)
        seconds = int(body.get("delete_message_seconds") or 0)
        if not 0 <= seconds <= MAX_DELETE_MESSAGE_SECONDS:
            raise errors.invalid_form(
                "delete_message_seconds", "NUMBER_TYPE_MAX", "between 0 and 604800"
            )
        world.bans.setdefault(guild_id, {})[user_id] = request[REASON]
        audit(request, guild_id, "ban", user_id)
        if (guild_id, user_id) in world.members:
            await emulator.remove_member(guild_id, user_id)
        if seconds:
            since = datetime.now(UTC) - timedelta(seconds=seconds)
            for channel in world.guild_channels(guild_id):
                for message in list(world.messages.get(channel.id, [])):
                    if (
                        message["author"]["id"] == str(user_id)
                        and datetime.fromisoformat(message["timestamp"]) >= since
                    ):
                        await emulator.remove_message(message)
        await emulator.gateway.dispatch(
            "GUILD_BAN_ADD",
            {"guild_id": str(guild_id), "user": world.users[user_id].payload()},
            guild_id=guild_id,
            transform=requires(Intent.GUILD_MODERATION),
        )
        emulator.changes.notify()
        return no_content()

    async def unban(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        user_id = snowflake(request, "user_id")
        require_in_guild(emulator, guild_id, Permission.BAN_MEMBERS)
        if user_id not in world.bans.get(guild_id, {}):
            raise errors.unknown("Ban", errors.UNKNOWN_BAN)
        del world.bans[guild_id][user_id]
        audit(request, guild_id, "unban", user_id)
        await emulator.gateway.dispatch(
            "GUILD_BAN_REMOVE",
            {"guild_id": str(guild_id), "user": world.users[user_id].payload()},
            guild_id=guild_id,
            transform=requires(Intent.GUILD_MODERATION),
        )
        emulator.changes.notify()
        return no_content()

    def ban_payload(guild_id: int, user_id: int) -> JSON:
        return {"reason": world.bans[guild_id][user_id], "user": world.users[user_id].payload()}

    async def list_bans(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        require_in_guild(emulator, guild_id, Permission.BAN_MEMBERS)
        limit = int(request.query.get("limit", "1000"))
        user_ids = sorted(world.bans.get(guild_id, {}))
        if "after" in request.query:
            user_ids = [u for u in user_ids if u > int(request.query["after"])]
        if "before" in request.query:
            user_ids = [u for u in user_ids if u < int(request.query["before"])][-limit:]
        return json_response([ban_payload(guild_id, u) for u in user_ids[:limit]])

    async def get_ban(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        require_in_guild(emulator, guild_id, Permission.BAN_MEMBERS)
        user_id = snowflake(request, "user_id")
        if user_id not in world.bans.get(guild_id, {}):
            raise errors.unknown("Ban", errors.UNKNOWN_BAN)
        return json_response(ban_payload(guild_id, user_id))

    async def list_emojis(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        return json_response([e.payload() for e in world.guild_emojis(guild_id)])

    async def get_emoji(request: web.Request) -> web.Response:
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        emoji = world.emojis.get(snowflake(request, "emoji_id"))
        if emoji is None or emoji.guild_id != guild_id:
            raise errors.unknown("Emoji", errors.UNKNOWN_EMOJI)
        return json_response(emoji.payload())

    member_path = "/guilds/{guild_id}/members/{user_id}"
    ban_path = "/guilds/{guild_id}/bans/{user_id}"
    return [
        ("GET", "/guilds/{guild_id}", get_guild),
        ("GET", "/guilds/{guild_id}/channels", guild_channels),
        ("GET", "/guilds/{guild_id}/roles", guild_roles),
        ("GET", "/guilds/{guild_id}/members", list_members),
        ("GET", member_path, get_member),
        ("PATCH", member_path, patch_member),
        ("DELETE", member_path, kick),
        ("PUT", member_path + "/roles/{role_id}", member_role),
        ("DELETE", member_path + "/roles/{role_id}", member_role),
        ("GET", "/guilds/{guild_id}/bans", list_bans),
        ("GET", ban_path, get_ban),
        ("PUT", ban_path, ban),
        ("DELETE", ban_path, unban),
        ("GET", "/guilds/{guild_id}/emojis", list_emojis),
        ("GET", "/guilds/{guild_id}/emojis/{emoji_id}", get_emoji),
    ]
