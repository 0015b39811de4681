"""REST: the bot's identity and application, gateway discovery, users and DM channels, and
application command sync."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.model import JSON
from carrier.testing.discord_emulator.rest import (
    BODY,
    Handler,
    body_of,
    guild_or_404,
    json_response,
    snowflake,
)

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.emulator import DiscordEmulator

COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def routes(emulator: DiscordEmulator) -> list[tuple[str, str, Handler]]:
    world = emulator.world

    def bot_user() -> JSON:
        return world.users[emulator.bot_user_id].payload() | {
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "email": None,
        }

    async def me(request: web.Request) -> web.Response:
        return json_response(bot_user())

    async def application(request: web.Request) -> web.Response:
        bot = world.users[emulator.bot_user_id]
        owner = next((u for u in world.users.values() if not u.bot), None)
        return json_response(
            {
                "id": str(emulator.application_id),
                "name": bot.name,
                "description": "",
                "icon": None,
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner.payload() if owner else bot.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": bot_user(),
                "summary": "",
                "tags": [],
                "approximate_guild_count": len(world.guilds),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            }
        )

    async def gateway(request: web.Request) -> web.Response:
        return json_response({"url": emulator.gateway_url})

    async def gateway_bot(request: web.Request) -> web.Response:
        return json_response(
            {
                "url": emulator.gateway_url,
                "shards": emulator.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_user(request: web.Request) -> web.Response:
        user = world.users.get(snowflake(request, "user_id"))
        if user is None:
            raise errors.unknown("User", errors.UNKNOWN_USER)
        return json_response(user.payload())

    async def open_dm(request: web.Request) -> web.Response:
        recipient = body_of(request).get("recipient_id")
        if recipient is None or int(recipient) not in world.users:
            raise errors.unknown("User", errors.UNKNOWN_USER)
        return json_response(emulator.dm_channel(int(recipient)).payload(world))

    def scope_of(request: web.Request) -> int | None:
        if snowflake(request, "app_id") != emulator.application_id:
            raise errors.ApiError(403, 50001, "Missing Access")
        if "guild_id" not in request.match_info:
            return None
        guild_id = snowflake(request, "guild_id")
        guild_or_404(emulator, guild_id)
        return guild_id

    def stored_command(scope: int | None, data: JSON, existing: list[JSON]) -> JSON:
        name = data.get("name")
        kind = int(data.get("type", 1))
        if not isinstance(name, str) or not COMMAND_NAME.fullmatch(name):
            raise errors.invalid_form("name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if kind == 1 and (
            name != name.lower() or not 1 <= len(data.get("description") or "") <= 100
        ):
            raise errors.invalid_form(
                "description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        old = next((c for c in existing if c["name"] == name and c["type"] == kind), None)
        command = {
            "id": old["id"] if old else str(world.ids.next()),
            "application_id": str(emulator.application_id),
            "version": str(world.ids.next()),
            "type": kind,
            "name": name,
            "description": data.get("description") or "",
            "options": data.get("options") or [],
            "default_member_permissions": data.get("default_member_permissions"),
            "dm_permission": data.get("dm_permission", True),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types") or [0],
            "nsfw": bool(data.get("nsfw", False)),
            "name_localizations": data.get("name_localizations"),
            "description_localizations": data.get("description_localizations"),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def get_commands(request: web.Request) -> web.Response:
        return json_response(emulator.commands.get(scope_of(request), []))

    async def put_commands(request: web.Request) -> web.Response:
        scope = scope_of(request)
        body = request.get(BODY)
        if not isinstance(body, list):
            raise errors.ApiError(400, 50035, "Invalid Form Body")
        if len(body) > 100:
            raise errors.ApiError(400, 30032, "Maximum number of application commands reached")
        existing = emulator.commands.get(scope, [])
        commands = [stored_command(scope, data, existing) for data in body]
        keys = [(c["name"], c["type"]) for c in commands]
        if len(set(keys)) != len(keys):
            raise errors.invalid_form(
                "_errors",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        emulator.commands[scope] = commands
        emulator.changes.notify()
        return json_response(commands)

    async def post_command(request: web.Request) -> web.Response:
        scope = scope_of(request)
        existing = emulator.commands.setdefault(scope, [])
        command = stored_command(scope, body_of(request), existing)
        existing[:] = [c for c in existing if c["id"] != command["id"]] + [command]
        emulator.changes.notify()
        return json_response(command, 201)

    commands = "/applications/{app_id}/commands"
    guild_commands = "/applications/{app_id}/guilds/{guild_id}/commands"
    return [
        ("GET", "/users/@me", me),
        ("GET", "/oauth2/applications/@me", application),
        ("GET", "/applications/@me", application),
        ("GET", "/gateway", gateway),
        ("GET", "/gateway/bot", gateway_bot),
        ("POST", "/users/@me/channels", open_dm),
        ("GET", "/users/{user_id}", get_user),
        ("GET", commands, get_commands),
        ("PUT", commands, put_commands),
        ("POST", commands, post_command),
        ("GET", guild_commands, get_commands),
        ("PUT", guild_commands, put_commands),
        ("POST", guild_commands, post_command),
    ]
