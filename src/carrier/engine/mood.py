"""The global daily mood: ``daily_mood_*`` values in global state, rolled once a day."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from carrier.store.store import Store

MOOD_KEYS = ("anger", "happiness", "energy", "curiosity")
PREFIX = "daily_mood_"
DATE_KEY = PREFIX + "date"


@dataclass(frozen=True, slots=True)
class Mood:
    """Each value 0..10."""

    anger: int = 2
    happiness: int = 5
    energy: int = 5
    curiosity: int = 5
    day: str = ""

    def as_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in MOOD_KEYS}

    def describe(self) -> str:
        words = []
        if self.anger >= 7:
            words.append("irritable")
        if self.happiness >= 7:
            words.append("cheerful")
        elif self.happiness <= 3:
            words.append("gloomy")
        if self.energy >= 7:
            words.append("energetic")
        elif self.energy <= 3:
            words.append("sleepy")
        if self.curiosity >= 7:
            words.append("curious")
        return ", ".join(words) or "calm"


def roll_mood(rng: random.Random, day: str) -> Mood:
    """A new day's mood: mostly mild, sometimes a strong day."""

    def value(mean: float) -> int:
        return max(0, min(10, round(rng.gauss(mean, 2.2))))

    return Mood(
        anger=value(2.5), happiness=value(5.5), energy=value(5.0), curiosity=value(6.0), day=day
    )


class MoodService:
    """Reads the mood from the database; the first read of a new day rolls it."""

    def __init__(self, store: Store, timezone: str, rng: random.Random) -> None:
        self._store = store
        self._zone = ZoneInfo(timezone)
        self._rng = rng
        self._lock = asyncio.Lock()

    def local(self, now: datetime) -> datetime:
        """``now`` in the bot's time zone (``mood.timezone``)."""
        return now.astimezone(self._zone)

    def day_of(self, now: datetime) -> str:
        return now.astimezone(self._zone).date().isoformat()

    async def current(self, agent_id: str, now: datetime) -> Mood:
        values = await self._store.state.all(agent_id, prefix=PREFIX)
        today = self.day_of(now)
        if values.get(DATE_KEY) == today:
            return self._parse(values, today)
        async with self._lock:
            values = await self._store.state.all(agent_id, prefix=PREFIX)
            if values.get(DATE_KEY) == today:
                return self._parse(values, today)
            return await self.roll(agent_id, now)

    async def roll(self, agent_id: str, now: datetime) -> Mood:
        mood = roll_mood(self._rng, self.day_of(now))
        stored = {PREFIX + key: str(value) for key, value in mood.as_dict().items()}
        stored[DATE_KEY] = mood.day
        await self._store.state.set_many(agent_id, stored)
        return mood

    @staticmethod
    def _parse(values: dict[str, str], day: str) -> Mood:
        parsed: dict[str, int] = {}
        for key in MOOD_KEYS:
            raw = values.get(PREFIX + key)
            try:
                parsed[key] = max(0, min(10, int(float(raw)))) if raw is not None else 5
            except ValueError:  # an admin typed nonsense: fall back, never crash
                parsed[key] = 5
        return Mood(day=day, **parsed)
