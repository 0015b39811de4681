"""The short-term log: recording messages and reading a channel's recent window.

The window is a time query over the log and the archive (``short_term_hours``, 24 by
default), newest first until the token budget is spent, returned oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carrier.memory.redis_mirror import RedisMirror
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store


def estimate_tokens(text: str) -> int:
    """A close, fast token estimate for budgeting (~4 characters per token, plus framing)."""
    return len(text) // 4 + 4


MIN_TOKENS = 2 * estimate_tokens("")
TYPICAL_TOKENS = 12
"""What the first page of a window is sized for: a short chat line (a name, a few words, the
framing).  Sized for short lines, the first page usually fills the budget, and a second read
(a second round trip) is the exception."""


def message_tokens(message: LoggedMessage) -> int:
    """What one transcript line costs: the speaker's name and the text (each as
    :func:`estimate_tokens`, inlined, its framing twice being MIN_TOKENS: counted for every
    line of every window)."""
    return len(message.author_name) // 4 + len(message.text) // 4 + MIN_TOKENS


class ShortTermMemory:
    """The 24-hour window of a channel, from the Redis mirror when it can answer for the
    whole period, else from the database (which then refills the mirror)."""

    def __init__(self, store: Store, hours: float, mirror: RedisMirror | None = None) -> None:
        self._store = store
        self._span = timedelta(hours=hours)
        self.mirror = mirror

    async def recent(
        self,
        agent_id: str,
        channel_id: str,
        since: datetime,
        limit: int,
        before: datetime | None = None,
    ) -> list[LoggedMessage]:
        """Newest first: the channel's messages since ``since`` (log and archive)."""
        mirror = self.mirror
        if mirror is not None:
            mirrored = await mirror.recent(agent_id, channel_id, since, limit, before)
            if mirrored is not None:
                return mirrored
        rows = await self._store.messages.recent(agent_id, channel_id, since, limit, before=before)
        if mirror is not None and mirror.available and before is None:
            await self._refill(mirror, agent_id, channel_id, since)
        return rows

    async def _refill(
        self, mirror: RedisMirror, agent_id: str, channel_id: str, since: datetime
    ) -> None:
        start = min(since, datetime.now(UTC) - self._span)
        rows = await self._store.messages.recent(agent_id, channel_id, start, mirror.capacity)
        await mirror.rebuild(
            agent_id, channel_id, rows, start, complete=len(rows) < mirror.capacity
        )

    async def invalidate(self, agent_id: str, channel_id: str) -> None:
        """A message of the channel was edited or deleted."""
        if self.mirror is not None:
            await self.mirror.forget_channel(agent_id, channel_id)

    async def window(
        self,
        agent_id: str,
        channel_id: str,
        now: datetime,
        budget_tokens: int,
        *,
        before: datetime | None = None,
        exclude_message_id: str | None = None,
    ) -> list[LoggedMessage]:
        """The channel's recent messages within ``budget_tokens``, oldest first."""
        since = now - self._span
        # A first page sized for typical chat lines; a second only when that did not fill
        # the budget (channels of short messages), sized for what is left of it, so that it
        # always fills it (every line costs at least MIN_TOKENS) without reading hundreds of
        # rows to keep a dozen.  Newest first, then returned oldest first.
        kept: list[LoggedMessage] = []
        spent = 0
        cursor = before
        limit = budget_tokens // TYPICAL_TOKENS + 1
        while True:
            rows = await self.recent(agent_id, channel_id, since, limit, before=cursor)
            for logged in rows:
                if logged.message_id == exclude_message_id:
                    continue
                cost = message_tokens(logged)
                if spent + cost > budget_tokens:
                    kept.reverse()
                    return kept
                spent += cost
                kept.append(logged)
            if len(rows) < limit:
                break
            cursor = rows[-1].created_at
            limit = (budget_tokens - spent) // MIN_TOKENS + 1
        kept.reverse()
        return kept
