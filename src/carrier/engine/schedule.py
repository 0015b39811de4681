"""Scheduled work, client-neutral: proactive engagement and the daily consolidation +
status update.

A client drives it (the Discord ``memory_tasks`` cog calls :meth:`Scheduler.run_due` from
its loop) and turns the results into platform calls: post the proactive messages, set the
status as presence.  Time comes from the engine's clock, so tests move it by hand.

Several instances of a deployment share the database: each job run is claimed first in
``job_locks`` under a name that says which run it is (``daily:<agent>:<local day>``,
``proactive:<agent>:<channel>:<slot>``), so a run happens once however many instances
ask for it.  A daily consolidation that failed, or found another run's lock, is tried again
later the same day (``consolidate-retry:<agent>:<day>:<slot>``, one instance per slot) until
one succeeds (``consolidated:<agent>:<day>``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from carrier.engine.initiative import STATUS_KEY, Proactive, proactive_message, refresh_status
from carrier.engine.pipeline import Engine
from carrier.memory.api import Memory
from carrier.memory.consolidation import ConsolidationReport
from carrier.store.schema import job_locks
from carrier.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A channel the client could post in."""

    channel_id: str
    guild_id: str | None


@dataclass(frozen=True, slots=True)
class DailyRun:
    """What the daily job did: the day (in the bot's time zone), the consolidation report
    (None without long-term memory, or when it failed) and the new status text."""

    day: str
    report: ConsolidationReport | None
    status: str
    retry: bool = False
    """A later attempt at the day's consolidation (the status was set by the first run)."""


class JobClaims:
    """One-time claims on job runs, in the ``job_locks`` table."""

    def __init__(self, store: Store, holder: str | None = None) -> None:
        self._store = store
        self.holder = holder or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"

    async def claim(self, name: str, *, now: datetime, until: datetime) -> bool:
        """True for the first caller to claim ``name`` before ``until``; False for every
        other caller (this or another instance).  Expired claims of the same job family
        (the name up to its last ``:``) are swept on the way."""
        family = name.rsplit(":", 1)[0] + ":"
        try:
            async with self._store.engine.begin() as conn:
                await conn.execute(
                    delete(job_locks).where(
                        job_locks.c.name.startswith(family, autoescape=True),
                        job_locks.c.expires_at <= now,
                    )
                )
                await conn.execute(
                    insert(job_locks).values(name=name, holder=self.holder, expires_at=until)
                )
        except IntegrityError:
            return False
        return True

    async def exists(self, name: str) -> bool:
        """Whether ``name`` has been claimed (and not yet swept)."""
        async with self._store.engine.connect() as conn:
            found = await conn.scalar(select(job_locks.c.name).where(job_locks.c.name == name))
        return found is not None


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        memory: Memory | None,
        *,
        interval: timedelta = timedelta(minutes=30),
        chance: float = 0.1,
        consolidation_hour: int = 4,
        rng: random.Random | None = None,
        claims: JobClaims | None = None,
        consolidation_retry: timedelta = timedelta(minutes=30),
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError("the proactive interval must be positive")
        if not 0 <= consolidation_hour <= 23:
            raise ValueError("consolidation_hour is an hour from 0 to 23")
        if consolidation_retry <= timedelta(0):
            raise ValueError("the consolidation retry interval must be positive")
        self.engine = engine
        self.memory = memory
        self.interval = interval
        self.chance = chance
        self.consolidation_hour = consolidation_hour
        self.rng = rng or random.Random()
        self.claims = claims or JobClaims(engine.store)
        self.consolidation_retry = consolidation_retry
        self._agent = engine.agent_id
        self._daily_seen: str | None = None

    # -- the maths -------------------------------------------------------------------------

    def slot(self, now: datetime) -> int:
        """The number of the proactive interval ``now`` falls in (intervals start at the
        Unix epoch, so every instance agrees)."""
        return int(now.timestamp() // self.interval.total_seconds())

    def next_proactive_at(self, now: datetime) -> datetime:
        """When the next interval starts."""
        seconds = (self.slot(now) + 1) * self.interval.total_seconds()
        return now + timedelta(seconds=seconds - now.timestamp())

    def daily_day(self, now: datetime) -> str | None:
        """The local day whose daily job is due at ``now``, or None before the hour."""
        local = self.engine.parts.mood.local(now)
        if local.hour < self.consolidation_hour:
            return None
        return local.date().isoformat()

    def next_daily_at(self, now: datetime) -> datetime:
        """The next time the local clock reads ``consolidation_hour``:00."""
        local = self.engine.parts.mood.local(now)
        target = local.replace(hour=self.consolidation_hour, minute=0, second=0, microsecond=0)
        if target <= local:
            target = (target + timedelta(days=1)).replace(hour=self.consolidation_hour)
        return target.astimezone(now.tzinfo)

    # -- the jobs ----------------------------------------------------------------------------

    async def proactive_tick(self, channels: Sequence[ChannelRef]) -> list[Proactive]:
        """The current interval's proactive messages for ``channels`` (each channel at most
        once per interval across instances).  A channel takes part when it is active, not in
        quiet hours and has messages in the short-term window; then the chance decides, and
        the message is skipped when the last one there was the bot's own."""
        now = self.engine.now()
        slot = self.slot(now)
        until = self.next_proactive_at(now) + self.interval
        local_hour = self.engine.parts.mood.local(now).hour
        since = now - timedelta(hours=self.engine.settings.short_term_hours)
        posted = []
        for channel in channels:
            policy = await self.engine.store.channels.policy(
                self._agent, channel.guild_id, channel.channel_id
            )
            if not policy.active or policy.is_quiet(local_hour):
                continue
            recent = await self.engine.parts.short_term.recent(
                self._agent, channel.channel_id, since, 1
            )
            if not recent:
                continue
            name = f"proactive:{self._agent}:{channel.channel_id}:{slot}"
            if not await self.claims.claim(name, now=now, until=until):
                continue
            try:
                message = await proactive_message(
                    self.engine,
                    channel.channel_id,
                    channel.guild_id,
                    chance=self.chance,
                    rng=self.rng,
                )
            except Exception:
                log.exception("proactive message for channel %s failed", channel.channel_id)
                continue
            if message is not None:
                posted.append(message)
        return posted

    async def run_daily(self) -> DailyRun | None:
        """Today's consolidation, then a new status text; None when it is not yet the hour
        or today's run was already claimed (here or by another instance).

        When the day's consolidation failed or was skipped (another run's lock), it is tried
        again every ``consolidation_retry`` the same day, by one instance per attempt, until
        one succeeds; such a retry returns a :class:`DailyRun` with ``retry`` set."""
        now = self.engine.now()
        day = self.daily_day(now)
        if day is None:
            return None
        if day == self._daily_seen:
            return None  # done (here or elsewhere): no need to ask the database
        name = f"daily:{self._agent}:{day}"
        until = now + timedelta(days=2)
        if await self.claims.claim(name, now=now, until=until):
            # This attempt's slot too: a retry waits for the next slot.
            await self.claims.claim(self._retry_name(day, now), now=now, until=until)
            report = await self._consolidate(day, now, until)
            status = await refresh_status(self.engine, rng=self.rng, now=now)
            return DailyRun(day, report, status)
        return await self._retry_consolidation(day, now, until)

    async def _retry_consolidation(
        self, day: str, now: datetime, until: datetime
    ) -> DailyRun | None:
        if self.memory is None or await self.claims.exists(f"consolidated:{self._agent}:{day}"):
            self._daily_seen = day
            return None
        if not await self.claims.claim(self._retry_name(day, now), now=now, until=until):
            return None  # this attempt is (being) made elsewhere, or was made here
        log.info("trying the consolidation of %s again", day)
        report = await self._consolidate(day, now, until)
        return DailyRun(day, report, await self.current_status() or "", retry=True)

    def _retry_name(self, day: str, now: datetime) -> str:
        slot = int(now.timestamp() // self.consolidation_retry.total_seconds())
        return f"consolidate-retry:{self._agent}:{day}:{slot}"

    async def _consolidate(
        self, day: str, now: datetime, until: datetime
    ) -> ConsolidationReport | None:
        """The day's consolidation; marked done unless it failed or was skipped (then
        :meth:`run_daily` tries again later)."""
        if self.memory is None:
            self._daily_seen = day
            return None
        try:
            report = await self.memory.consolidate(now)
        except Exception:
            # Crash-safe: a later attempt picks up what this one left in the log.
            log.exception(
                "consolidation of %s failed; trying again in %s", day, self.consolidation_retry
            )
            return None
        if report.skipped_locked:
            log.warning(
                "consolidation of %s skipped: another run holds its lock; trying again in %s",
                day,
                self.consolidation_retry,
            )
            return report
        log.info("consolidated %s: %s", day, asdict(report))
        self.engine.consolidated(asdict(report))
        await self.claims.claim(f"consolidated:{self._agent}:{day}", now=now, until=until)
        self._daily_seen = day
        return report

    async def current_status(self) -> str | None:
        """The stored status text, for the presence at start-up."""
        return await self.engine.store.state.get(self._agent, STATUS_KEY)


async def run_daily_jobs(
    scheduler: Scheduler, *, check_every: timedelta = timedelta(minutes=10)
) -> None:
    """The daily consolidation and status update for a deployment without a chat client
    that drives the scheduler (the HTTP API on its own): checks every ``check_every`` until
    cancelled.  Failures are logged and retried at the next check."""
    while True:
        try:
            await scheduler.run_daily()
        except Exception:
            log.exception("the daily jobs failed; trying again in %s", check_every)
        now = scheduler.engine.now()
        wake = min(scheduler.next_daily_at(now), now + check_every)
        await asyncio.sleep(max(1.0, (wake - now).total_seconds()))
