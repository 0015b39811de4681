"""The emulated REST API v10: routing, authentication, request recording, error injection
and Discord's JSON error bodies. Handlers live in the ``rest_*`` modules by resource."""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.flags import Permission
from carrier.testing.discord_emulator.model import JSON, Channel, Guild
from carrier.testing.discord_emulator.records import RecordedRequest

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.emulator import DiscordEmulator

API_PREFIX = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("discord_body", object)  # the parsed JSON body (or payload_json)
FILES = web.RequestKey("discord_files", list[web.FileField])  # multipart file parts
# The URL-decoded X-Audit-Log-Reason.
REASON: web.RequestKey[str | None] = web.RequestKey("discord_reason")


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when the content type is exactly this.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def no_content() -> web.Response:
    return web.Response(status=204)


@dataclass(slots=True)
class InjectedFailure:
    method: str
    path: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int
    retry_after: float | None


class RestApi:
    """Registers the REST routes of every resource module on the emulator's application."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self.emulator = emulator

    def add_routes(self, router: web.UrlDispatcher) -> None:
        from carrier.testing.discord_emulator import (
            rest_channels,
            rest_guilds,
            rest_interactions,
            rest_meta,
        )

        for module in (rest_meta, rest_channels, rest_guilds, rest_interactions):
            for method, path, handler in module.routes(self.emulator):
                router.add_route(method, API_PREFIX + path, handler)
        router.add_route("*", API_PREFIX + "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        # Discord's answer to an unknown route; noted, since it may be one not emulated yet.
        self.emulator.server_errors.append(f"no emulated route: {request.method} {request.path}")
        raise errors.ApiError(404, 0, "404: Not Found")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        record = await self._record(request)
        emulator = self.emulator
        try:
            try:
                self._authenticate(request, record.path)
                self._inject_failure(record)
                response = await handler(request)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A body the handlers could not read: Discord answers 400 (a 500 would make
                # discord.py retry with backoff for seconds). Kept for the test to look at.
                emulator.server_errors.append(
                    f"{record.method} {record.path}: {traceback.format_exc()}"
                )
                raise errors.ApiError(400, 50035, "Invalid Form Body") from exc
        except errors.ApiError as exc:
            response = json_response(exc.body(), exc.status)
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
                response.headers["X-RateLimit-Scope"] = "user"
                # discord.py takes a 429 without Via for a Cloudflare ban and gives up.
                response.headers["Via"] = "1.1 google"
        record.status = response.status
        if isinstance(response, web.Response) and response.body is not None:
            try:
                record.response = json.loads(bytes(response.body))  # type: ignore[arg-type]
            except ValueError:
                record.response = None
        emulator.rest_log.append(record)
        emulator.changes.notify()
        return response

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        files = 0
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            file_fields = []
            for key, value in form.items():
                if key == "payload_json":
                    body = json.loads(str(value))
                elif isinstance(value, web.FileField):
                    file_fields.append(value)
            files = len(file_fields)
            request[FILES] = file_fields
        else:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
            request[FILES] = []
        request[BODY] = body
        reason = request.headers.get("X-Audit-Log-Reason")
        request[REASON] = unquote(reason) if reason is not None else None
        return RecordedRequest(
            method=request.method,
            path=request.path[len(API_PREFIX) :],
            query=dict(request.query),
            json=body,
            headers=dict(request.headers),
            reason=unquote(reason) if reason is not None else None,
            files=files,
        )

    def _authenticate(self, request: web.Request, path: str) -> None:
        if path.startswith(("/interactions/", "/webhooks/")):
            return  # authenticated by the interaction token in the path
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bot ")
        expected = self.emulator.token
        if not header.startswith("Bot ") or not token or (expected and token != expected):
            raise errors.ApiError(401, 0, "401: Unauthorized")

    def _inject_failure(self, record: RecordedRequest) -> None:
        failures = self.emulator.failures
        for failure in failures:
            if failure.method not in ("*", record.method) or not failure.path.fullmatch(
                record.path
            ):
                continue
            failure.times -= 1
            if failure.times <= 0:
                failures.remove(failure)
            raise errors.ApiError(
                failure.status, failure.code, failure.message, retry_after=failure.retry_after
            )


# helpers shared by the resource modules ---------------------------------------------------


def snowflake(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not value.isdigit():
        raise errors.invalid_form(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
    return int(value)


def body_of(request: web.Request) -> dict[str, Any]:
    body = request.get(BODY)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise errors.ApiError(400, 50109, "The request body contains invalid JSON.")
    return body


def channel_or_404(emulator: DiscordEmulator, channel_id: int) -> Channel:
    channel = emulator.world.channels.get(channel_id)
    if channel is None:
        raise errors.unknown("Channel", errors.UNKNOWN_CHANNEL)
    return channel


def guild_or_404(emulator: DiscordEmulator, guild_id: int) -> Guild:
    guild = emulator.world.guilds.get(guild_id)
    if guild is None:
        raise errors.unknown("Guild", errors.UNKNOWN_GUILD)
    return guild


def message_or_404(emulator: DiscordEmulator, channel_id: int, message_id: int) -> JSON:
    message = emulator.world.find_message(channel_id, message_id)
    if message is None:
        raise errors.unknown("Message", errors.UNKNOWN_MESSAGE)
    return message


def require_in_channel(emulator: DiscordEmulator, channel: Channel, *needed: int) -> None:
    """403 50001 if the bot cannot see ``channel``; 403 50013 if it lacks a permission."""
    if channel.kind == "dm":
        return
    perms = emulator.world.channel_permissions(channel.id, emulator.bot_user_id)
    if not perms & Permission.VIEW_CHANNEL:
        raise errors.missing_access()
    for permission in needed:
        if not perms & permission:
            raise errors.missing_permissions()


def require_in_guild(emulator: DiscordEmulator, guild_id: int, *needed: int) -> None:
    perms = emulator.world.base_permissions(guild_id, emulator.bot_user_id)
    for permission in needed:
        if not perms & permission:
            raise errors.missing_permissions()


def public_message(message: JSON) -> JSON:
    """A stored message as the API returns it (without the recorded ``allowed_mentions``)."""
    return {k: v for k, v in message.items() if k != "allowed_mentions"}
