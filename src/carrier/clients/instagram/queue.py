"""The publishing limit and the queue of posts that wait for it.

Instagram limits API-published posts per account over a rolling 24 hours (the
``content_publishing_limit`` reference: ``quota_total`` "currently 50" over
``quota_duration`` 86400 s; older versions of the guide said 25).  Carrier publishes at most
``instagram.posts_per_24h`` (default 25, the issue's limit) or the API's ``quota_total``,
whichever is lower, and counts what was used as the higher of

* the API's ``quota_usage`` (posts published by any app in the window), and
* its own record: posts published in the window, plus posts whose publish call went out
  in the window with no known result (they may have been published).

Posts beyond the limit stay ``queued``; :func:`run_queue` (or :meth:`PublishQueue.run`),
an async function a scheduler can call, publishes the due ones oldest first while the limit
allows, and reports when the next slot opens.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carrier.clients.instagram.graph import (
    GraphClient,
    GraphUnavailable,
    RateLimited,
    TokenExpired,
)
from carrier.clients.instagram.poster import (
    RETRY_TOKEN,
    RETRY_UNAVAILABLE,
    AttemptResult,
    Clock,
    InstagramPoster,
    utc_now,
)
from carrier.store.instagram import InstagramPostRepository, PostRecord

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Allowance:
    limit: int
    used_remote: int
    used_local: int
    next_slot: datetime | None
    """When the oldest post of the window leaves it (``None`` while posts remain)."""

    @property
    def used(self) -> int:
        return max(self.used_remote, self.used_local)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(slots=True)
class QueueReport:
    """What one run of the queue did."""

    results: list[AttemptResult] = field(default_factory=list)
    waiting: list[PostRecord] = field(default_factory=list)
    """Due posts left alone because the limit is reached."""
    allowance: Allowance | None = None
    stopped: str | None = None
    """Why the run stopped early (rate limited, API unreachable), if it did."""

    @property
    def published(self) -> list[PostRecord]:
        return [r.post for r in self.results if r.outcome == "published"]

    @property
    def failed(self) -> list[PostRecord]:
        return [r.post for r in self.results if r.post.status == "failed"]


class PublishQueue:
    """Decides how many posts may go out now, and publishes the queue within that."""

    def __init__(
        self,
        repo: InstagramPostRepository,
        graph: GraphClient,
        poster: InstagramPoster,
        *,
        posts_per_24h: int = 25,
        clock: Clock = utc_now,
    ) -> None:
        self._repo = repo
        self._graph = graph
        self._poster = poster
        self._posts_per_24h = posts_per_24h
        self._clock = clock

    async def allowance(self, agent_id: str) -> Allowance:
        """The limit, what was used (by the API's count and by ours), and the next slot.
        Raises the Graph API's errors (:class:`RateLimited`, :class:`TokenExpired`, ...)."""
        quota = await self._graph.publishing_limit()
        window = timedelta(seconds=quota.duration_seconds) if quota.duration_seconds else WINDOW
        now = self._clock()
        since = now - window
        used_local = await self._repo.count_published_since(agent_id, since)
        limit = min(self._posts_per_24h, quota.total) if quota.total > 0 else self._posts_per_24h
        times = await self._repo.published_times_since(agent_id, since)
        used = max(quota.usage, used_local)
        next_slot = None
        if used >= limit:
            # Our oldest post in the window frees the first slot; if the API counts posts we
            # did not make, we cannot know their times, and the window end is the safe bet.
            next_slot = times[0] + window if times and used_local >= quota.usage else now + window
        return Allowance(limit, quota.usage, used_local, next_slot)

    async def publish_or_queue(self, post: PostRecord) -> AttemptResult:
        """Try ``post`` now: published when the limit allows, else uploaded and left queued."""
        try:
            allowance = await self.allowance(post.agent_id)
        except TokenExpired as exc:
            await self._poster.hold(post, str(exc), outcome="failed", retry_in=RETRY_TOKEN)
            raise
        except RateLimited as exc:
            return await self._poster.hold(
                post,
                f"publishing limit unknown: {exc}",
                outcome="rate_limited",
                retry_in=timedelta(seconds=exc.retry_after),
            )
        except GraphUnavailable as exc:
            return await self._poster.hold(
                post, f"publishing limit unknown: {exc}", retry_in=RETRY_UNAVAILABLE
            )
        return await self._poster.process(post, may_publish=allowance.remaining > 0)

    async def run(self, agent_id: str) -> QueueReport:
        """Publish the due queued posts, oldest first, while the limit allows."""
        report = QueueReport()
        due = await self._repo.due(agent_id, self._clock())
        if not due:
            return report
        try:
            allowance = await self.allowance(agent_id)
        except (RateLimited, GraphUnavailable) as exc:
            report.stopped = str(exc)
            report.waiting = due
            return report
        report.allowance = allowance
        remaining = allowance.remaining
        for index, post in enumerate(due):
            # An upload still to do, or a publish to verify, needs no slot of the quota.
            needs_work_without_quota = (
                post.media_url is None or post.publish_requested_at is not None
            )
            if remaining <= 0 and not needs_work_without_quota:
                report.waiting.append(post)
                continue
            result = await self._poster.process(post, may_publish=remaining > 0)
            report.results.append(result)
            if result.published_now:
                remaining -= 1
            if result.outcome == "rate_limited":
                report.stopped = result.message
                report.waiting.extend(due[index + 1 :])
                break
            if result.outcome == "waiting" and result.post.status == "queued" and remaining <= 0:
                report.waiting.append(result.post)
        if remaining <= 0 and report.allowance is not None:
            # Refresh the next slot now that this run used some of the window.
            with contextlib.suppress(RateLimited, GraphUnavailable):
                report.allowance = await self.allowance(agent_id)
        return report


async def run_queue(queue: PublishQueue, agent_id: str) -> QueueReport:
    """The scheduled job: publish what the limit allows now (see :meth:`PublishQueue.run`)."""
    report = await queue.run(agent_id)
    if report.results or report.waiting:
        log.info(
            "instagram queue: %d published, %d failed, %d waiting%s",
            len(report.published),
            len(report.failed),
            len(report.waiting),
            f" (stopped: {report.stopped})" if report.stopped else "",
        )
    return report
