"""Per-user relationship metrics: how every message moves them, how they decay, how they read.

Ranges (also CHECKed by the database): anger 0..10, rapport 0..10, trust 0..10,
formality -5..+5.  Values drift back toward neutral slowly (``relationships.decay_per_hour``)
so a bad day is not held against someone forever.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.settings import RelationshipSettings
from carrier.store.relationships import RANGES, RelationshipRow
from carrier.store.store import Store

NEUTRAL = {"anger": 0.0, "rapport": 5.0, "trust": 5.0, "formality": 0.0}

_INSULTS = re.compile(
    r"\b(stupid|idiot|dumb|moron|shut up|hate you|useless|trash|garbage|loser|suck[s]?|"
    r"pathetic|annoying|worst|stfu|kys)\b",
    re.IGNORECASE,
)
_FORMAL = re.compile(
    r"\b(please|kindly|thank you|thanks|would you|could you|may i|sir|madam|regards|"
    r"good (morning|afternoon|evening)|greetings|pardon|apologies|sincerely|dear)\b",
    re.IGNORECASE,
)
_INFORMAL = re.compile(
    r"\b(lol|lmao|lmfao|rofl|bruh|bro|dude|yo|sup|omg|wtf|gonna|wanna|gotta|ya|u|ur|"
    r"haha+|hehe+|kinda|sorta|nah|yep|yeah|yup|tbh|idk|imo|fr|ngl)\b",
    re.IGNORECASE,
)


class SentimentAnalyzer(Protocol):
    """Scores text from -1 (hostile) to +1 (warm)."""

    def compound(self, text: str) -> float: ...


class VaderSentiment:
    """VADER: a lexicon and rules tuned for social-media and chat text."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def compound(self, text: str) -> float:
        return float(self._analyzer.polarity_scores(text[:2000])["compound"])


@dataclass(frozen=True, slots=True)
class Relationship:
    anger: float = NEUTRAL["anger"]
    rapport: float = NEUTRAL["rapport"]
    trust: float = NEUTRAL["trust"]
    formality: float = NEUTRAL["formality"]

    def clamped(self) -> Relationship:
        return Relationship(**{name: _clamp(getattr(self, name), *RANGES[name]) for name in RANGES})

    def as_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 2) for name in RANGES}

    @property
    def is_angry(self) -> bool:
        return self.anger >= 6

    @property
    def is_formal(self) -> bool:
        return self.formality >= 2

    @property
    def is_casual(self) -> bool:
        return self.formality <= -2

    def describe(self, name: str) -> str:
        """The relationship in words, for prompts and for people."""
        parts = []
        if self.anger >= 8:
            parts.append(f"you are furious with {name}")
        elif self.anger >= 6:
            parts.append(f"you are angry with {name}")
        elif self.anger >= 3:
            parts.append(f"{name} has irritated you a little")
        if self.rapport >= 8:
            parts.append(f"{name} is a close friend")
        elif self.rapport >= 6:
            parts.append(f"you like {name}")
        elif self.rapport <= 2:
            parts.append(f"you do not get along with {name}")
        if self.trust >= 8:
            parts.append(f"you trust {name} deeply")
        elif self.trust <= 2:
            parts.append(f"you do not trust {name}")
        if self.is_formal:
            parts.append(f"{name} speaks formally, so answer formally")
        elif self.is_casual:
            parts.append(f"{name} is casual with you, so be casual")
        if not parts:
            return f"you and {name} are on neutral terms"
        return "; ".join(parts)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def formality_of(text: str) -> float:
    """-5 (very casual) .. +5 (very formal), from markers in the text."""
    score = 1.5 * len(_FORMAL.findall(text)) - 1.5 * len(_INFORMAL.findall(text))
    stripped = text.strip()
    if stripped[:1].isupper() and stripped[-1:] in ".?!":
        score += 1.0
    if stripped == stripped.lower() and any(c.isalpha() for c in stripped):
        score -= 1.0
    if "!!" in stripped or "??" in stripped:
        score -= 0.5
    return _clamp(score, -5.0, 5.0)


def decay(rel: Relationship, hours: float, rate: float) -> Relationship:
    """Move every metric toward neutral by ``rate * hours``, never past it."""
    if hours <= 0 or rate <= 0:
        return rel
    step = rate * hours
    values = {}
    for name, neutral in NEUTRAL.items():
        value = getattr(rel, name)
        values[name] = max(neutral, value - step) if value > neutral else min(neutral, value + step)
    return Relationship(**values)


def react(rel: Relationship, text: str, sentiment: float, sensitivity: float) -> Relationship:
    """The relationship after one message with ``sentiment`` in -1..1."""
    s = sensitivity
    insults = len(_INSULTS.findall(text))
    hostility = max(0.0, -sentiment) + 0.5 * insults
    warmth = max(0.0, sentiment)
    anger = rel.anger + s * (2.5 * hostility - 0.6 * warmth)
    rapport = rel.rapport + s * (0.6 * warmth - 0.8 * hostility)
    trust = rel.trust + s * (0.1 - 1.0 * max(0.0, hostility - 0.5))
    target = formality_of(text)
    formality = rel.formality + 0.35 * (target - rel.formality)
    return Relationship(anger, rapport, trust, formality).clamped()


@dataclass(frozen=True, slots=True)
class Observation:
    """A user's message, as the relationship sees it."""

    user_id: str
    text: str
    at: datetime
    sentiment: float | None = None
    """Precomputed by the caller (outside its transaction), else computed here."""


class RelationshipService:
    """Reads and updates relationships in the database at the moment of interaction."""

    def __init__(
        self, store: Store, settings: RelationshipSettings, analyzer: SentimentAnalyzer
    ) -> None:
        self._store = store
        self._settings = settings
        self._analyzer = analyzer

    def _from_row(self, row: RelationshipRow | None, now: datetime) -> Relationship:
        if row is None:
            return Relationship()
        rel = Relationship(row.anger, row.rapport, row.trust, row.formality)
        hours = (now - row.updated_at).total_seconds() / 3600
        return decay(rel, hours, self._settings.decay_per_hour)

    async def current(self, agent_id: str, user_id: str, now: datetime) -> Relationship:
        row = await self._store.relationships.get(agent_id, user_id)
        return self._from_row(row, now)

    def sentiment(self, text: str) -> float:
        return self._analyzer.compound(text)

    async def observe_many_in(
        self, conn: AsyncConnection, agent_id: str, observations: Sequence[Observation]
    ) -> list[Relationship]:
        """:meth:`observe` for a batch, inside the caller's transaction: one read and one
        write for the whole batch.  Returns the relationship after each observation, in
        order (a user with two messages in the batch sees both)."""
        if not observations:
            return []
        repo = self._store.relationships
        stored = await repo.get_many_in(conn, agent_id, [o.user_id for o in observations])
        current: dict[str, tuple[Relationship, datetime]] = {}
        after: list[Relationship] = []
        for seen in observations:
            if seen.user_id in current:
                rel, since = current[seen.user_id]
                hours = max(0.0, (seen.at - since).total_seconds() / 3600)
                rel = decay(rel, hours, self._settings.decay_per_hour)
            else:
                rel = self._from_row(stored.get(seen.user_id), seen.at)
            sentiment = seen.sentiment
            if sentiment is None:
                sentiment = self._analyzer.compound(seen.text)
            rel = react(rel, seen.text, sentiment, self._settings.sensitivity)
            current[seen.user_id] = (rel, seen.at)
            after.append(rel)
        await repo.put_many_in(
            conn,
            agent_id,
            {
                user_id: RelationshipRow(rel.anger, rel.rapport, rel.trust, rel.formality, at)
                for user_id, (rel, at) in current.items()
            },
        )
        return after

    async def set(
        self, agent_id: str, user_id: str, now: datetime, **values: float
    ) -> Relationship:
        """Set metrics by hand (admin); out-of-range values raise ValueError."""
        for name, value in values.items():
            if name not in RANGES:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(RANGES)}")
            low, high = RANGES[name]
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
        rel = replace(await self.current(agent_id, user_id, now), **values)
        await self._store.relationships.put(
            agent_id,
            user_id,
            RelationshipRow(rel.anger, rel.rapport, rel.trust, rel.formality, now),
        )
        return rel
