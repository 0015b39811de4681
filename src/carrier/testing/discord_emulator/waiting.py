"""Awaiting what the bot did: ready, messages, REST requests, presences. Each
``wait_for_*`` returns the oldest match it has not returned before, so nothing that
happened before the call is missed and nothing is returned twice."""

from __future__ import annotations

import re
from collections.abc import Callable

from carrier.testing.discord_emulator.core import EmulatorCore
from carrier.testing.discord_emulator.model import JSON
from carrier.testing.discord_emulator.records import RecordedRequest


class BotWaiting(EmulatorCore):
    _returned_messages: set[str]
    _author_cursor: dict[str, int]
    _returned_requests: set[int]
    _returned_presences: set[int]

    async def wait_until_ready(self, timeout: float = 10, *, shards: int = 1) -> None:  # noqa: ASYNC109 (the test API takes timeouts)
        """The bot identified (``shards`` sessions) and got its guilds."""
        await self.changes.wait_for(
            lambda: True if len(self.gateway.attached_sessions()) >= shards else None,
            timeout=timeout,
            describe=lambda: f"{len(self.gateway.attached_sessions())} sessions identified",
        )
        await self.settle()

    async def wait_for_message(
        self,
        *,
        channel_id: int | None = None,
        author_id: int | None = None,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> JSON:
        """The oldest message (in posting order, deleted ones included) not yet returned by
        this method, by ``author_id`` (default: the bot; interaction responses and follow-ups
        count) in ``channel_id`` (default: any), matching ``predicate``. The bot's messages
        carry the ``allowed_mentions`` it sent."""
        author = str(author_id if author_id is not None else self.bot_user_id)

        def find() -> JSON | None:
            posted = self._by_author.get(author, [])
            start = self._author_cursor.get(author, 0)
            while start < len(posted) and posted[start]["id"] in self._returned_messages:
                start += 1  # skip the prefix already handed out
            self._author_cursor[author] = start
            for message in posted[start:]:
                if message["id"] in self._returned_messages:
                    continue
                if channel_id is not None and message["channel_id"] != str(channel_id):
                    continue
                if predicate is not None and not predicate(message):
                    continue
                self._returned_messages.add(message["id"])
                return message
            return None

        def describe() -> str:
            seen = [
                (cid, m["author"]["username"], m["content"][:80])
                for cid, ms in self.world.messages.items()
                for m in ms[-5:]
            ]
            return f"no matching message within {timeout}s; recent: {seen!r}"

        return await self.changes.wait_for(find, timeout=timeout, describe=describe)

    async def wait_for_request(
        self,
        method: str,
        path_regex: str,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
        *,
        status: int | None = None,
    ) -> RecordedRequest:
        """The oldest REST request not yet returned by this method whose method matches,
        whose path (relative to /api/v10) fully matches ``path_regex`` and, if given, whose
        answer had ``status``."""
        pattern = re.compile(path_regex)

        def find() -> RecordedRequest | None:
            for index, record in enumerate(self.rest_log):
                if index in self._returned_requests:
                    continue
                if status is not None and record.status != status:
                    continue
                if record.method == method.upper() and pattern.fullmatch(record.path):
                    self._returned_requests.add(index)
                    return record
            return None

        return await self.changes.wait_for(
            find,
            timeout=timeout,
            describe=lambda: (
                f"no {method} {path_regex}; log: "
                + repr([(r.method, r.path, r.status) for r in self.rest_log[-15:]])
            ),
        )

    async def wait_for_presence(
        self,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> JSON:
        """The oldest presence update not yet returned by this method matching ``predicate``."""

        def find() -> JSON | None:
            for index, presence in enumerate(self.gateway.presences):
                if index in self._returned_presences:
                    continue
                if predicate is None or predicate(presence):
                    self._returned_presences.add(index)
                    return presence
            return None

        return await self.changes.wait_for(
            find, timeout=timeout, describe=lambda: f"presences: {self.gateway.presences!r}"
        )
