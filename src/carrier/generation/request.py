"""What a generator is asked for, platform-neutral and already read from the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from carrier.persona.service import Persona
from carrier.store.messages import LoggedMessage

Purpose = Literal["reply", "proactive", "status"]


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    purpose: Purpose
    agent_id: str
    persona: Persona
    guild_id: str | None = None
    channel_id: str | None = None
    message_text: str = ""
    author_name: str = ""
    transcript: Sequence[LoggedMessage] = ()
    mood: Mapping[str, int] = field(default_factory=dict)
    mood_words: str = ""
    relationship: Mapping[str, float] = field(default_factory=dict)
    relationship_words: str = ""
    emote_names: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class GeneratedText:
    text: str
    source: str
    """Which generator produced it, e.g. ``markov:guild`` or ``markov:persona``."""
