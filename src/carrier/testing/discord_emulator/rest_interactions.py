"""REST: interaction callbacks (``?with_response=1``) and the interaction webhook
(follow-ups, the original response: GET/PATCH/DELETE ``@original``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.model import JSON
from carrier.testing.discord_emulator.records import Interaction
from carrier.testing.discord_emulator.rest import (
    FILES,
    Handler,
    body_of,
    json_response,
    no_content,
    public_message,
    snowflake,
)
from carrier.testing.discord_emulator.rest_channels import (
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    apply_edit,
    build_bot_message,
)

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.emulator import DiscordEmulator

PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
CHAT_INPUT_COMMAND_MESSAGE = 20


def routes(emulator: DiscordEmulator) -> list[tuple[str, str, Handler]]:
    world = emulator.world

    def by_token(request: web.Request) -> Interaction:
        token = request.match_info["token"]
        if snowflake(request, "app_id") != emulator.application_id:
            raise errors.unknown("Webhook", errors.UNKNOWN_WEBHOOK)
        for interaction in emulator.interactions.values():
            if interaction.token == token:
                return interaction
        raise errors.unknown("Webhook", errors.UNKNOWN_WEBHOOK)

    def interaction_extra(interaction: Interaction) -> JSON:
        user = world.users[interaction.user_id].payload()
        command_name = interaction.payload["data"]["name"]
        owners = interaction.payload.get("authorizing_integration_owners", {})
        return {
            "type": CHAT_INPUT_COMMAND_MESSAGE,
            "application_id": str(emulator.application_id),
            "webhook_id": str(emulator.application_id),
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "name": command_name,
                "user": user,
            },
            "interaction_metadata": {
                "id": str(interaction.id),
                "type": 2,
                "name": command_name,
                "command_type": 1,
                "user": user,
                "authorizing_integration_owners": owners,
            },
        }

    async def new_message(interaction: Interaction, body: JSON, files: list[web.FileField]) -> JSON:
        channel = world.channels[interaction.channel_id]
        message = build_bot_message(
            emulator, channel, body, files, extra=interaction_extra(interaction)
        )
        if not message["flags"] & MESSAGE_FLAG_EPHEMERAL:
            await emulator.publish_message(channel, message)
        return message

    async def callback(request: web.Request) -> web.Response:
        interaction = emulator.interactions.get(snowflake(request, "interaction_id"))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise errors.unknown("interaction", errors.UNKNOWN_INTERACTION)
        if interaction.callbacks:
            raise errors.ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = body_of(request)
        kind = int(body.get("type") or 0)
        data: JSON = body.get("data") or {}
        message: JSON | None = None
        if kind == CHANNEL_MESSAGE:
            message = await new_message(interaction, data, request[FILES])
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            flags = MESSAGE_FLAG_LOADING | (int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            channel = world.channels[interaction.channel_id]
            message = emulator.factory.build(
                channel, emulator.bot_user_id, "", flags=flags
            ) | interaction_extra(interaction)
            message["allowed_mentions"] = None
            if not flags & MESSAGE_FLAG_EPHEMERAL:
                await emulator.publish_message(channel, message)
        elif kind not in (PONG, DEFERRED_UPDATE, UPDATE_MESSAGE, 8, 9, 10, 12):
            raise errors.invalid_form("type", "BASE_TYPE_CHOICES", "Value must be one of ...")
        interaction.callbacks.append(body)
        if message is not None:
            interaction.original = message
            interaction.ephemeral = bool(message["flags"] & MESSAGE_FLAG_EPHEMERAL)
        emulator.changes.notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        resource: JSON = {"type": kind}
        if message is not None:
            resource["message"] = public_message(message)
        return json_response(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": 2,
                    "response_message_id": message["id"] if message else None,
                    "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                    "response_message_ephemeral": interaction.ephemeral,
                },
                "resource": resource,
            }
        )

    def original_or_404(interaction: Interaction) -> JSON:
        if interaction.original is None:
            raise errors.unknown("Message", errors.UNKNOWN_MESSAGE)
        return interaction.original

    def target_message(request: web.Request, interaction: Interaction) -> JSON:
        if request.match_info["message_id"] == "@original":
            return original_or_404(interaction)
        message_id = request.match_info["message_id"]
        for message in interaction.followup_messages:
            if message["id"] == message_id:
                return message
        raise errors.unknown("Message", errors.UNKNOWN_MESSAGE)

    async def followup(request: web.Request) -> web.Response:
        interaction = by_token(request)
        if not interaction.callbacks:
            raise errors.unknown("Webhook", errors.UNKNOWN_WEBHOOK)
        body = body_of(request)
        original = interaction.original
        if original is not None and original["flags"] & MESSAGE_FLAG_LOADING:
            # The first follow-up after a deferral fills in the "thinking" message.
            emulator.factory.validate_outgoing(body, files=len(request[FILES]))
            apply_edit(original, body, emulator)
            await dispatch_update(interaction, original)
            message = original
        else:
            message = await new_message(interaction, body, request[FILES])
        interaction.followup_messages.append(message)
        emulator.changes.notify()
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(public_message(message))
        return no_content()

    async def dispatch_update(interaction: Interaction, message: JSON) -> None:
        if message["flags"] & MESSAGE_FLAG_EPHEMERAL:
            return
        channel = world.channels[interaction.channel_id]
        await emulator.gateway.dispatch(
            "MESSAGE_UPDATE", message, guild_id=channel.guild_id, transform=emulator.message_view
        )

    async def get_webhook_message(request: web.Request) -> web.Response:
        interaction = by_token(request)
        return json_response(public_message(target_message(request, interaction)))

    async def edit_webhook_message(request: web.Request) -> web.Response:
        interaction = by_token(request)
        message = target_message(request, interaction)
        body = body_of(request)
        if body.get("content"):
            emulator.factory.validate_outgoing(body, files=0)
        apply_edit(message, body, emulator)
        if message is interaction.original:
            interaction.edits.append(body)
        await dispatch_update(interaction, message)
        emulator.changes.notify()
        return json_response(public_message(message))

    async def delete_webhook_message(request: web.Request) -> web.Response:
        interaction = by_token(request)
        message = target_message(request, interaction)
        if world.find_message(int(message["channel_id"]), int(message["id"])) is not None:
            await emulator.remove_message(message)
        if message is interaction.original:
            interaction.original = None
        return no_content()

    webhook_message = "/webhooks/{app_id}/{token}/messages/{message_id}"
    return [
        ("POST", "/interactions/{interaction_id}/{token}/callback", callback),
        ("POST", "/webhooks/{app_id}/{token}", followup),
        ("GET", webhook_message, get_webhook_message),
        ("PATCH", webhook_message, edit_webhook_message),
        ("DELETE", webhook_message, delete_webhook_message),
    ]
