"""Reads of what rarely changes, reused while the database's config revision holds.

The persona, the mood, a channel's policy and a guild's emotes are read for every message
but edited once in a long while.  Every write to their tables bumps one counter in the
database (triggers of migration 0007, so writers in any process count), and the engine reads
that counter once per message: while it is unchanged, what was read at it is still what the
database holds, and the reads are skipped.  An edit made a second ago still shapes the very
next reply.  Without the counter (its row missing) nothing is reused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")

MAX_ENTRIES = 4096
"""Policies and emotes are kept per channel and guild: the least recently used go first."""


class ConfigCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._values: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._max = max_entries

    async def read(
        self, revision: int | None, key: Hashable, fetch: Callable[[], Awaitable[T]]
    ) -> T:
        """What ``fetch`` returned at ``revision`` (read now if not known at it).

        ``revision`` must have been read before this call, so that a value read now is at
        least as new as it; ``fetch`` must be a pure read whose result nobody changes.
        """
        if revision is None:
            return await fetch()
        held = self._values.get(key)
        if held is not None and held[0] == revision:
            self._values.move_to_end(key)
            return cast(T, held[1])
        value = await fetch()
        held = self._values.get(key)
        if held is None or held[0] <= revision:
            self._values[key] = (revision, value)
            self._values.move_to_end(key)
            while len(self._values) > self._max:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        self._values.clear()
