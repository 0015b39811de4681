"""REST: channels and messages (send, edit, delete, history), typing, reactions, threads."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from aiohttp import web

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.flags import Intent, Permission
from carrier.testing.discord_emulator.gateway import requires
from carrier.testing.discord_emulator.model import JSON, Channel, iso_now
from carrier.testing.discord_emulator.rest import (
    FILES,
    Handler,
    body_of,
    channel_or_404,
    json_response,
    message_or_404,
    no_content,
    public_message,
    require_in_channel,
    snowflake,
)

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.emulator import DiscordEmulator

MESSAGE_FLAG_EPHEMERAL = 64
MESSAGE_FLAG_LOADING = 128


def message_id(message: JSON) -> int:
    return int(message["id"])


def attachments_from_files(emulator: DiscordEmulator, files: list[web.FileField]) -> list[JSON]:
    out = []
    for file in files:
        attachment_id = emulator.world.ids.next()
        size = len(file.file.read())
        url = f"https://cdn.discordapp.com/attachments/0/{attachment_id}/{file.filename}"
        out.append(
            {
                "id": str(attachment_id),
                "filename": file.filename,
                "size": size,
                "url": url,
                "proxy_url": url,
                "content_type": file.content_type,
            }
        )
    return out


def build_bot_message(
    emulator: DiscordEmulator,
    channel: Channel,
    body: JSON,
    files: list[web.FileField],
    *,
    extra: JSON | None = None,
) -> JSON:
    """The message the bot asked for in ``body`` (validated as Discord does), with the
    ``allowed_mentions`` it sent recorded on the stored copy."""
    factory = emulator.factory
    factory.validate_outgoing(body, files=len(files))
    allowed = factory.normalise_allowed_mentions(body.get("allowed_mentions"))
    reference = factory.normalise_reference(body.get("message_reference"))
    reply = None
    if reference is not None and reference.get("message_id"):
        ref_channel = int(reference.get("channel_id") or channel.id)
        reply = emulator.world.find_message(ref_channel, int(reference["message_id"]))
        if reply is None and reference.get("fail_if_not_exists", True):
            raise errors.invalid_form(
                "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
            )
    content = body.get("content") or ""
    poll = factory.poll_from_request(body["poll"]) if body.get("poll") else None
    message = factory.build(
        channel,
        emulator.bot_user_id,
        content,
        mentioned=factory.mentions_allowed(content, allowed),
        reply_to=reply,
        mention_replied_user=allowed is None or bool(allowed.get("replied_user", False)),
        attachments=attachments_from_files(emulator, files),
        embeds=body.get("embeds") or [],
        poll=poll,
        flags=int(body.get("flags") or 0),
        nonce=body.get("nonce"),
        components=body.get("components") or [],
        everyone_allowed=allowed is None or "everyone" in (allowed.get("parse") or ()),
    )
    if extra:
        message |= extra
    message["allowed_mentions"] = allowed
    return message


def apply_edit(message: JSON, body: JSON, emulator: DiscordEmulator) -> None:
    for key in ("content", "embeds", "components", "attachments"):
        if key in body and body[key] is not None:
            message[key] = body[key]
    if "flags" in body and body["flags"] is not None:
        message["flags"] = int(body["flags"])
    message["flags"] = int(message.get("flags") or 0) & ~MESSAGE_FLAG_LOADING
    if "allowed_mentions" in body:
        message["allowed_mentions"] = emulator.factory.normalise_allowed_mentions(
            body["allowed_mentions"]
        )
    message["edited_timestamp"] = iso_now()


def routes(emulator: DiscordEmulator) -> list[tuple[str, str, Handler]]:
    world = emulator.world

    def send_permissions(channel: Channel, body: JSON, files: int) -> list[int]:
        needed: list[int] = [
            Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
        ]
        if files:
            needed.append(Permission.ATTACH_FILES)
        if body.get("poll"):
            needed.append(Permission.SEND_POLLS)
        return needed

    async def get_channel(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(emulator, channel)
        return json_response(channel.payload(world))

    async def post_message(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        body = body_of(request)
        files: list[web.FileField] = request[FILES]
        if channel.kind == "dm" and channel.recipient_id in emulator.closed_dms:
            raise errors.ApiError(403, 50007, "Cannot send messages to this user")
        require_in_channel(emulator, channel, *send_permissions(channel, body, len(files)))
        if channel.is_thread and channel.archived:
            if channel.locked:
                raise errors.ApiError(400, 50083, "Thread is archived")
            channel.archived = False
        message = build_bot_message(emulator, channel, body, files)
        await emulator.publish_message(channel, message)
        return json_response(public_message(message))

    async def get_message(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(emulator, channel, Permission.READ_MESSAGE_HISTORY)
        message = message_or_404(emulator, channel.id, snowflake(request, "message_id"))
        return json_response(public_message(message))

    async def history(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(emulator, channel, Permission.READ_MESSAGE_HISTORY)
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise errors.invalid_form("limit", "NUMBER_TYPE_COERCE", "Not an integer.") from None
        if not 1 <= limit <= 100:
            raise errors.invalid_form(
                "limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100"
            )
        messages = world.messages.get(channel.id, [])

        def position(query: str) -> int:
            return bisect.bisect_left(messages, int(request.query[query]), key=message_id)

        if "before" in request.query:
            end = position("before")
            page = messages[max(0, end - limit) : end]
        elif "after" in request.query:
            start = bisect.bisect_right(messages, int(request.query["after"]), key=message_id)
            page = messages[start : start + limit]
        elif "around" in request.query:
            middle = position("around")
            half = limit // 2
            page = messages[max(0, middle - half) : middle + (limit - half)]
        else:
            page = messages[-limit:]
        return json_response([public_message(m) for m in reversed(page)])

    async def edit_message(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(emulator, channel)
        message = message_or_404(emulator, channel.id, snowflake(request, "message_id"))
        if message["author"]["id"] != str(emulator.bot_user_id):
            raise errors.ApiError(403, 50005, "Cannot edit a message authored by another user")
        body = body_of(request)
        if "content" in body:
            emulator.factory.validate_outgoing(
                {"content": body["content"] or " "}, files=0
            )  # only the length can be wrong in an edit
        apply_edit(message, body, emulator)
        await emulator.gateway.dispatch(
            "MESSAGE_UPDATE", message, guild_id=channel.guild_id, transform=emulator.message_view
        )
        emulator.changes.notify()
        return json_response(public_message(message))

    async def delete_message(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        message = message_or_404(emulator, channel.id, snowflake(request, "message_id"))
        if message["author"]["id"] != str(emulator.bot_user_id):
            require_in_channel(emulator, channel, Permission.MANAGE_MESSAGES)
        else:
            require_in_channel(emulator, channel)
        await emulator.remove_message(message)
        return no_content()

    async def typing(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(
            emulator,
            channel,
            Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES,
        )
        emulator.typing.append(channel.id)
        emulator.changes.notify()
        return no_content()

    def parse_emoji(raw: str) -> JSON:
        """``🐟`` or ``name:id`` (discord.py also sends ``:name:id`` and ``a:name:id``)."""
        if ":" in raw:
            *rest, emoji_id = raw.split(":")
            name = rest[-1] if rest else ""
            if not emoji_id.isdigit() or int(emoji_id) not in world.emojis:
                raise errors.ApiError(400, errors.UNKNOWN_EMOJI, "Unknown Emoji")
            return {"id": emoji_id, "name": name or world.emojis[int(emoji_id)].name}
        return {"id": None, "name": raw}

    def emoji_key(emoji: JSON) -> str:
        return f"{emoji['name']}:{emoji['id']}" if emoji["id"] else str(emoji["name"])

    async def add_reaction(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(
            emulator, channel, Permission.READ_MESSAGE_HISTORY, Permission.ADD_REACTIONS
        )
        message = message_or_404(emulator, channel.id, snowflake(request, "message_id"))
        emoji = parse_emoji(request.match_info["emoji"])
        reaction = next(
            (r for r in message["reactions"] if emoji_key(r["emoji"]) == emoji_key(emoji)), None
        )
        if reaction is not None and reaction["me"]:
            return no_content()
        if reaction is None:
            reaction = {
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "me": False,
                "me_burst": False,
                "burst_colors": [],
                "emoji": emoji,
            }
            message["reactions"].append(reaction)
        reaction["count"] += 1
        reaction["count_details"]["normal"] += 1
        reaction["me"] = True
        emulator.reactions.append((channel.id, int(message["id"]), emoji_key(emoji)))
        emulator.changes.notify()
        event: JSON = {
            "user_id": str(emulator.bot_user_id),
            "channel_id": str(channel.id),
            "message_id": message["id"],
            "message_author_id": message["author"]["id"],
            "emoji": emoji,
            "burst": False,
            "type": 0,
        }
        if channel.guild_id is not None:
            event["guild_id"] = str(channel.guild_id)
            event["member"] = world.members[(channel.guild_id, emulator.bot_user_id)].payload(world)
        await emulator.gateway.dispatch(
            "MESSAGE_REACTION_ADD",
            event,
            guild_id=channel.guild_id,
            transform=requires(Intent.GUILD_MESSAGE_REACTIONS),
        )
        return no_content()

    async def remove_reaction(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        require_in_channel(emulator, channel, Permission.READ_MESSAGE_HISTORY)
        message = message_or_404(emulator, channel.id, snowflake(request, "message_id"))
        key = emoji_key(parse_emoji(request.match_info["emoji"]))
        for reaction in list(message["reactions"]):
            if emoji_key(reaction["emoji"]) == key and reaction["me"]:
                reaction["me"] = False
                reaction["count"] -= 1
                reaction["count_details"]["normal"] -= 1
                if reaction["count"] <= 0:
                    message["reactions"].remove(reaction)
        return no_content()

    async def create_thread(request: web.Request) -> web.Response:
        parent = channel_or_404(emulator, snowflake(request, "channel_id"))
        body = body_of(request)
        from_message = "message_id" in request.match_info
        kind = "thread" if from_message or int(body.get("type") or 12) == 11 else "private_thread"
        permission = (
            Permission.CREATE_PUBLIC_THREADS
            if kind == "thread"
            else Permission.CREATE_PRIVATE_THREADS
        )
        require_in_channel(emulator, parent, permission)
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise errors.invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100.")
        if from_message:
            message = message_or_404(emulator, parent.id, snowflake(request, "message_id"))
            thread_id = int(message["id"])  # Discord reuses the message id
            if thread_id in world.channels:
                raise errors.ApiError(
                    400, 160004, "A thread has already been created for this message"
                )
        else:
            thread_id = world.ids.next()
        thread = Channel(
            thread_id,
            parent.guild_id,
            name,
            kind=kind,
            parent_id=parent.id,
            owner_id=emulator.bot_user_id,
            invitable=bool(body.get("invitable", True)),
            thread_members={emulator.bot_user_id},
        )
        world.channels[thread.id] = thread
        world.messages.setdefault(thread.id, [])
        payload = thread.payload(world)
        await emulator.gateway.dispatch(
            "THREAD_CREATE", payload | {"newly_created": True}, guild_id=parent.guild_id
        )
        emulator.changes.notify()
        return json_response(payload, 201)

    async def add_thread_member(request: web.Request) -> web.Response:
        thread = channel_or_404(emulator, snowflake(request, "channel_id"))
        guild_id = thread.guild_id
        if not thread.is_thread or guild_id is None:
            raise errors.ApiError(400, 50024, "Cannot execute action on this channel type")
        raw_user = request.match_info["user_id"]
        user_id = emulator.bot_user_id if raw_user == "@me" else snowflake(request, "user_id")
        if user_id not in world.users or (guild_id, user_id) not in world.members:
            raise errors.unknown("Member", errors.UNKNOWN_MEMBER)
        require_in_channel(emulator, thread)
        if thread.archived:
            raise errors.ApiError(400, 50083, "Thread is archived")
        if (
            thread.kind == "private_thread"
            and user_id != emulator.bot_user_id
            and emulator.bot_user_id not in thread.thread_members
        ):
            require_in_channel(emulator, thread, Permission.MANAGE_THREADS)
        thread.thread_members.add(user_id)
        await emulator.gateway.dispatch(
            "THREAD_MEMBERS_UPDATE",
            {
                "id": str(thread.id),
                "guild_id": str(guild_id),
                "member_count": len(thread.thread_members),
                "added_members": [
                    {
                        "id": str(thread.id),
                        "user_id": str(user_id),
                        "join_timestamp": iso_now(),
                        "flags": 0,
                        "member": world.members[(guild_id, user_id)].payload(world),
                    }
                ],
            },
            guild_id=guild_id,
        )
        emulator.changes.notify()
        return no_content()

    async def patch_channel(request: web.Request) -> web.Response:
        channel = channel_or_404(emulator, snowflake(request, "channel_id"))
        body = body_of(request)
        require_in_channel(emulator, channel)
        if channel.is_thread:
            owns = channel.owner_id == emulator.bot_user_id
            if "locked" in body or not owns:
                require_in_channel(emulator, channel, Permission.MANAGE_THREADS)
            changes: dict[str, Any] = {
                k: body[k] for k in ("archived", "locked", "invitable") if k in body
            }
            for key, value in changes.items():
                setattr(channel, key, bool(value))
        else:
            require_in_channel(emulator, channel, Permission.MANAGE_CHANNELS)
            if "topic" in body:
                channel.topic = body["topic"]
        if "name" in body:
            channel.name = str(body["name"])
        payload = channel.payload(world)
        event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
        await emulator.gateway.dispatch(event, payload, guild_id=channel.guild_id)
        emulator.changes.notify()
        return json_response(payload)

    message_path = "/channels/{channel_id}/messages/{message_id}"
    reaction_path = message_path + "/reactions/{emoji}/@me"
    return [
        ("GET", "/channels/{channel_id}", get_channel),
        ("PATCH", "/channels/{channel_id}", patch_channel),
        ("POST", "/channels/{channel_id}/messages", post_message),
        ("GET", "/channels/{channel_id}/messages", history),
        ("GET", message_path, get_message),
        ("PATCH", message_path, edit_message),
        ("DELETE", message_path, delete_message),
        ("POST", "/channels/{channel_id}/typing", typing),
        ("PUT", reaction_path, add_reaction),
        ("DELETE", reaction_path, remove_reaction),
        ("POST", "/channels/{channel_id}/threads", create_thread),
        ("POST", message_path + "/threads", create_thread),
        ("PUT", "/channels/{channel_id}/thread-members/{user_id}", add_thread_member),
    ]
