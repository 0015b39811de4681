"""Message payloads as Discord builds them: author and member, parsed mentions filtered by
``allowed_mentions``, replies (``message_reference`` + ``referenced_message``), attachments,
stickers and polls; plus the validation Discord applies to a message the bot sends."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from carrier.testing.discord_emulator import errors
from carrier.testing.discord_emulator.flags import Permission
from carrier.testing.discord_emulator.model import JSON, Channel, World, iso_now, sf

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
MAX_CONTENT = 2000


class MessageFactory:
    """Builds message payloads in ``world``; ``bot_user_id`` is the emulated bot."""

    def __init__(self, world: World, bot_user_id: int) -> None:
        self._world = world
        self._bot_user_id = bot_user_id

    def user_payload_with_member(self, guild_id: int | None, user_id: int) -> JSON:
        data = self._world.users[user_id].payload()
        member = self._world.members.get((guild_id, user_id)) if guild_id else None
        if member is not None:
            data["member"] = member.payload(self._world, with_user=False)
        return data

    def build(
        self,
        channel: Channel,
        author_id: int,
        content: str,
        *,
        mentioned: Iterable[int] = (),
        reply_to: JSON | None = None,
        mention_replied_user: bool = True,
        attachments: Sequence[JSON] = (),
        sticker: bool = False,
        webhook_id: int | None = None,
        type: int = 0,
        embeds: Sequence[JSON] = (),
        poll: JSON | None = None,
        flags: int = 0,
        nonce: Any = None,
        components: Sequence[JSON] = (),
        everyone_allowed: bool = True,
    ) -> JSON:
        """``everyone_allowed``: whether ``allowed_mentions`` lets @everyone/@here ping (it
        also needs the author's MENTION_EVERYONE permission)."""
        world = self._world
        guild_id = channel.guild_id
        mention_ids = list(dict.fromkeys(mentioned))
        if reply_to is not None and mention_replied_user:
            replied = int(reply_to["author"]["id"])
            if replied not in mention_ids and replied in world.users:
                mention_ids.append(replied)
        role_ids = [r for r in map(int, ROLE_MENTION.findall(content)) if r in world.roles]
        message_id = world.ids.next()
        if webhook_id is not None:
            author: JSON = {
                "id": str(webhook_id),
                "username": world.users[author_id].name if author_id in world.users else "webhook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
            }
        else:
            author = world.users[author_id].payload()
        data: JSON = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "author": author,
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": everyone_allowed
            and ("@everyone" in content or "@here" in content)
            and (
                guild_id is None
                or bool(
                    world.channel_permissions(channel.id, author_id) & Permission.MENTION_EVERYONE
                )
            ),
            "mentions": [
                self.user_payload_with_member(guild_id, u) for u in mention_ids if u in world.users
            ],
            "mention_roles": [str(r) for r in role_ids],
            "mention_channels": [],
            "attachments": list(attachments),
            "embeds": list(embeds),
            "reactions": [],
            "pinned": False,
            "type": 19 if reply_to is not None and type == 0 else type,
            "flags": flags,
            "components": list(components),
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
            member = world.members.get((guild_id, author_id))
            if member is not None and webhook_id is None:
                data["member"] = member.payload(world, with_user=False)
        if webhook_id is not None:
            data["webhook_id"] = str(webhook_id)
        if reply_to is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                "guild_id": reply_to.get("guild_id"),
            }
            data["referenced_message"] = {
                k: v for k, v in reply_to.items() if k not in ("referenced_message",)
            }
        if sticker:
            data["sticker_items"] = [
                {"id": str(world.ids.next()), "name": "wave", "format_type": 1}
            ]
        if poll is not None:
            data["poll"] = poll
        if nonce is not None:
            data["nonce"] = nonce
        return data

    def fake_attachments(self, count: int) -> list[JSON]:
        out = []
        for i in range(count):
            attachment_id = self._world.ids.next()
            url = f"https://cdn.discordapp.com/attachments/0/{attachment_id}/file{i}.png"
            out.append(
                {
                    "id": str(attachment_id),
                    "filename": f"file{i}.png",
                    "size": 1024,
                    "url": url,
                    "proxy_url": url,
                    "content_type": "image/png",
                    "width": 64,
                    "height": 64,
                }
            )
        return out

    # what the bot sends --------------------------------------------------------------------

    def mentions_allowed(self, content: str, allowed: JSON | None) -> list[int]:
        """User ids in ``content`` that ``allowed_mentions`` lets ping (all if absent)."""
        parsed = [int(u) for u in USER_MENTION.findall(content)]
        if allowed is None:
            return parsed
        if "users" in (allowed.get("parse") or ()):
            return parsed
        listed = {int(u) for u in allowed.get("users") or ()}
        return [u for u in parsed if u in listed]

    @staticmethod
    def normalise_allowed_mentions(allowed: Any) -> JSON | None:
        if not isinstance(allowed, dict):
            return None
        out = dict(allowed)
        for key in ("users", "roles"):
            if key in out and out[key] is not None:
                out[key] = [sf(v) for v in out[key]]
        return out

    @staticmethod
    def normalise_reference(reference: Any) -> JSON | None:
        if not isinstance(reference, dict):
            return None
        return {k: (sf(v) if k.endswith("_id") else v) for k, v in reference.items()}

    @staticmethod
    def validate_outgoing(body: JSON, *, files: int) -> None:
        content = body.get("content") or ""
        if not isinstance(content, str):
            raise errors.invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
        if len(content) > MAX_CONTENT:
            raise errors.invalid_form(
                "content",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CONTENT} or fewer in length.",
            )
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise errors.invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer.")
        if not (
            content
            or embeds
            or files
            or body.get("poll")
            or body.get("sticker_ids")
            or body.get("components")
        ):
            raise errors.ApiError(400, 50006, "Cannot send an empty message")

    def poll_from_request(self, poll: JSON) -> JSON:
        hours = float(poll.get("duration") or 24)
        answers = [
            {"answer_id": i + 1, "poll_media": answer.get("poll_media", {})}
            for i, answer in enumerate(poll.get("answers") or [])
        ]
        if not answers:
            raise errors.invalid_form(
                "poll.answers", "BASE_TYPE_REQUIRED", "This field is required"
            )
        return {
            "question": poll.get("question", {}),
            "answers": answers,
            "expiry": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            "allow_multiselect": bool(poll.get("allow_multiselect", False)),
            "layout_type": int(poll.get("layout_type", 1)),
            "results": {"is_finalized": False, "answer_counts": []},
        }
