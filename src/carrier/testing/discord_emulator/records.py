"""What the emulator saw the bot do, and how a test waits for it: recorded REST requests,
slash-command interactions and their answers, and a change notifier for ``wait_for_*``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from carrier.testing.discord_emulator.model import JSON

T = TypeVar("T")


class Changes:
    """Wakes every waiter whenever something is recorded; waiters re-check their condition."""

    def __init__(self) -> None:
        self._condition: asyncio.Condition | None = None
        self._waiters = 0
        self._wake_pending = False

    def _get(self) -> asyncio.Condition:
        if self._condition is None:
            self._condition = asyncio.Condition()
        return self._condition

    def notify(self) -> None:
        if not self._waiters or self._wake_pending:
            return  # nobody to wake, or a wake-up is already on its way
        condition = self._get()
        self._wake_pending = True

        async def wake() -> None:
            async with condition:
                self._wake_pending = False
                condition.notify_all()

        # Recording happens in sync code; waking the waiters is a tiny task.
        task = asyncio.get_running_loop().create_task(wake())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def wait_for(
        self,
        check: Callable[[], T | None],
        *,
        timeout: float,  # noqa: ASYNC109 (the test API takes timeouts)
        describe: Callable[[], str],
    ) -> T:
        """The first non-None result of ``check``, re-evaluated after every change; raises
        ``TimeoutError`` with ``describe()`` (what was seen instead) after ``timeout``."""
        condition = self._get()
        result = check()
        if result is not None:
            return result
        self._waiters += 1
        try:
            async with asyncio.timeout(timeout), condition:
                while True:
                    result = check()
                    if result is not None:
                        return result
                    await condition.wait()
        except TimeoutError:
            raise TimeoutError(describe()) from None
        finally:
            self._waiters -= 1


_background: set[asyncio.Task[None]] = set()


@dataclass(slots=True)
class RecordedRequest:
    """One REST call the bot made. ``path`` is relative to ``/api/v10`` (e.g.
    ``/channels/123/messages``); ``json`` is the JSON body (``payload_json`` of a multipart
    body, with ``files`` counting the attached files); ``reason`` is the URL-decoded
    ``X-Audit-Log-Reason``."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    reason: str | None
    files: int = 0
    status: int = 0
    response: Any = None


@dataclass(eq=False)
class Interaction:
    """A slash-command invocation sent to the bot, and everything the bot answered.

    ``callbacks``: bodies of ``POST /interactions/{id}/{token}/callback`` (``{"type": 4,
    "data": {...}}``, ``{"type": 5}``...); ``original``: the original response message (after
    every edit); ``edits``: bodies of ``PATCH .../messages/@original`` in order;
    ``followup_messages``: messages created with ``POST /webhooks/{app}/{token}``.
    """

    id: int
    token: str
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: JSON
    changes: Changes
    callbacks: list[JSON] = field(default_factory=list)
    original: JSON | None = None
    edits: list[JSON] = field(default_factory=list)
    followup_messages: list[JSON] = field(default_factory=list)
    ephemeral: bool = False

    async def response(self, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109 (the test API takes timeouts)
        """The first callback body the bot sent (``{"type": 4|5|..., "data": ...}``)."""
        return await self.changes.wait_for(
            lambda: self.callbacks[0] if self.callbacks else None,
            timeout=timeout,
            describe=lambda: f"interaction {self.id}: no callback within {timeout}s",
        )

    async def followups(self, count: int = 1, timeout: float = 5.0) -> list[JSON]:  # noqa: ASYNC109 (the test API takes timeouts)
        """The first ``count`` follow-up messages."""
        return await self.changes.wait_for(
            lambda: (
                list(self.followup_messages[:count])
                if len(self.followup_messages) >= count
                else None
            ),
            timeout=timeout,
            describe=lambda: (
                f"interaction {self.id}: {len(self.followup_messages)} follow-ups, "
                f"wanted {count} within {timeout}s"
            ),
        )

    async def wait_for_edit(
        self,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes timeouts)
    ) -> JSON:
        """The first edit body of the original response matching ``predicate``."""
        return await self.changes.wait_for(
            lambda: next((e for e in self.edits if predicate is None or predicate(e)), None),
            timeout=timeout,
            describe=lambda: f"interaction {self.id}: edits so far {self.edits!r}",
        )
