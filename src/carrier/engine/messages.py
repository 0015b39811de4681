"""The platform-neutral values that cross the engine's boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message as a client saw it, stripped of everything platform-specific."""

    channel_id: str
    message_id: str
    author_id: str
    author_name: str
    text: str
    created_at: datetime
    guild_id: str | None = None
    author_is_bot: bool = False
    mentions_bot: bool = False
    reply_to_message_id: str | None = None
    reply_to_author_id: str | None = None
    reply_to_bot: bool = False
    is_direct: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to answer, and why.  ``reason`` is a short stable code shown to operators."""

    respond: bool
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        verdict = "answer" if self.respond else "stay silent"
        return f"{verdict}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the client should send."""

    text: str
    channel_id: str
    reply_to_message_id: str | None
    reason: str
    message_id: str
    source: str


@dataclass(slots=True)
class Outcome:
    """Everything the engine did with one message: for the client and for ``/why``."""

    message: IncomingMessage
    decision: Decision
    reply: Reply | None = None
    context: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
