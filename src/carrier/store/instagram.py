"""Instagram posts and every attempt to publish them.

A post is one request to publish one file with one caption, keyed by ``(agent_id,
request_id)`` so a retried request finds its post instead of making a second one.  Its
``status`` moves ``queued`` -> ``publishing`` (claimed by a worker, with a lease) ->
``published``, or ends ``failed`` / ``cancelled``; a post whose try ended without a verdict
(rate limited, still processing, outcome unknown) goes back to ``queued`` with
``not_before``.  The Graph API ids (container, media) are stored as soon as they are known,
before the next call, so a crash never loses track of what Instagram already has.

Secrets are never stored: rows hold paths, hashes, URLs, ids, captions and error messages
that the client has already scrubbed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, func, or_, select, update

from carrier.store.database import Database
from carrier.store.schema import instagram_attempts, instagram_posts
from carrier.store.upsert import insert

PostStatus = Literal["queued", "publishing", "published", "failed", "cancelled"]
AttemptStage = Literal["upload", "container", "processing", "publish", "verify"]
AttemptOutcome = Literal["published", "waiting", "rate_limited", "failed", "unknown"]
OPEN_STATUSES: tuple[PostStatus, ...] = ("queued", "publishing")

_UPDATABLE = frozenset(
    {
        "status",
        "caption",
        "local_path",
        "remote_name",
        "media_url",
        "container_id",
        "container_created_at",
        "publish_requested_at",
        "media_id",
        "published_at",
        "not_before",
        "lease_until",
        "error",
    }
)


@dataclass(frozen=True, slots=True)
class PostRecord:
    id: int
    agent_id: str
    request_id: str
    status: PostStatus
    media_kind: str
    local_path: str
    sha256: str
    size_bytes: int
    caption: str
    remote_name: str | None
    media_url: str | None
    container_id: str | None
    container_created_at: datetime | None
    publish_requested_at: datetime | None
    media_id: str | None
    published_at: datetime | None
    not_before: datetime | None
    lease_until: datetime | None
    attempt_count: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    post_id: int
    stage: AttemptStage
    outcome: AttemptOutcome | None
    container_id: str | None
    media_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def _post(row: Row[Any]) -> PostRecord:
    return PostRecord(**row._asdict())


def _attempt(row: Row[Any]) -> AttemptRecord:
    return AttemptRecord(**row._asdict())


class InstagramPostRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    # -- posts -----------------------------------------------------------------------------

    async def create(
        self,
        *,
        agent_id: str,
        request_id: str,
        media_kind: str,
        local_path: str,
        sha256: str,
        size_bytes: int,
        caption: str,
        now: datetime,
    ) -> tuple[PostRecord, bool]:
        """Insert a queued post; if the request id is known, return that post instead.
        The flag says whether the post is new."""
        async with self._engine.begin() as conn:
            stmt = insert(instagram_posts, conn.dialect.name).values(
                agent_id=agent_id,
                request_id=request_id,
                status="queued",
                media_kind=media_kind,
                local_path=local_path,
                sha256=sha256,
                size_bytes=size_bytes,
                caption=caption,
                attempt_count=0,
                created_at=now,
                updated_at=now,
            )
            result = await conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["agent_id", "request_id"])
            )
            created = bool(result.rowcount)
            row = (
                await conn.execute(
                    select(instagram_posts).where(
                        instagram_posts.c.agent_id == agent_id,
                        instagram_posts.c.request_id == request_id,
                    )
                )
            ).one()
        return _post(row), created

    async def get(self, agent_id: str, post_id: int) -> PostRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(instagram_posts).where(
                        instagram_posts.c.agent_id == agent_id, instagram_posts.c.id == post_id
                    )
                )
            ).first()
        return None if row is None else _post(row)

    async def by_request(self, agent_id: str, request_id: str) -> PostRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(instagram_posts).where(
                        instagram_posts.c.agent_id == agent_id,
                        instagram_posts.c.request_id == request_id,
                    )
                )
            ).first()
        return None if row is None else _post(row)

    async def list_posts(
        self, agent_id: str, statuses: Sequence[PostStatus] | None = None
    ) -> list[PostRecord]:
        """Posts oldest first, optionally only those in ``statuses``."""
        query = select(instagram_posts).where(instagram_posts.c.agent_id == agent_id)
        if statuses is not None:
            query = query.where(instagram_posts.c.status.in_(list(statuses)))
        query = query.order_by(instagram_posts.c.created_at, instagram_posts.c.id)
        async with self._engine.connect() as conn:
            return [_post(row) for row in await conn.execute(query)]

    async def due(self, agent_id: str, now: datetime) -> list[PostRecord]:
        """Queued posts whose ``not_before`` has passed, and claimed posts whose lease ran
        out (their worker died), oldest first."""
        query = (
            select(instagram_posts)
            .where(
                instagram_posts.c.agent_id == agent_id,
                or_(
                    (instagram_posts.c.status == "queued")
                    & or_(
                        instagram_posts.c.not_before.is_(None),
                        instagram_posts.c.not_before <= now,
                    ),
                    (instagram_posts.c.status == "publishing")
                    & (instagram_posts.c.lease_until < now),
                ),
            )
            .order_by(instagram_posts.c.created_at, instagram_posts.c.id)
        )
        async with self._engine.connect() as conn:
            return [_post(row) for row in await conn.execute(query)]

    async def claim(self, post_id: int, *, now: datetime, lease_until: datetime) -> bool:
        """Take a due post for one worker (``publishing`` with a lease); False when another
        worker has it or it is no longer open.  Counts the attempt."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(instagram_posts)
                .where(
                    instagram_posts.c.id == post_id,
                    or_(
                        instagram_posts.c.status == "queued",
                        (instagram_posts.c.status == "publishing")
                        & (instagram_posts.c.lease_until < now),
                    ),
                )
                .values(
                    status="publishing",
                    lease_until=lease_until,
                    attempt_count=instagram_posts.c.attempt_count + 1,
                    updated_at=now,
                )
            )
            return bool(result.rowcount)

    async def update(self, post_id: int, *, now: datetime, **values: Any) -> None:
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
        async with self._engine.begin() as conn:
            await conn.execute(
                update(instagram_posts)
                .where(instagram_posts.c.id == post_id)
                .values(**values, updated_at=now)
            )

    async def cancel(self, agent_id: str, post_id: int, *, now: datetime) -> bool:
        """Cancel a queued or failed post; False when it is publishing, published, already
        cancelled or unknown."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(instagram_posts)
                .where(
                    instagram_posts.c.agent_id == agent_id,
                    instagram_posts.c.id == post_id,
                    instagram_posts.c.status.in_(["queued", "failed"]),
                )
                .values(status="cancelled", lease_until=None, updated_at=now)
            )
            return bool(result.rowcount)

    async def count_published_since(self, agent_id: str, since: datetime) -> int:
        """Posts published at or after ``since``, plus posts whose publish call went out in
        that window without a known result (they may have been published)."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(instagram_posts)
                .where(
                    instagram_posts.c.agent_id == agent_id,
                    or_(
                        instagram_posts.c.published_at >= since,
                        (instagram_posts.c.status != "published")
                        & (instagram_posts.c.publish_requested_at >= since),
                    ),
                )
            )
        return int(count or 0)

    async def published_times_since(self, agent_id: str, since: datetime) -> list[datetime]:
        """When each post of the window was published (or its publish call went out)."""
        moment = func.coalesce(
            instagram_posts.c.published_at, instagram_posts.c.publish_requested_at
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(instagram_posts.c.published_at, instagram_posts.c.publish_requested_at)
                .where(instagram_posts.c.agent_id == agent_id, moment >= since)
                .order_by(moment)
            )
            return [row.published_at or row.publish_requested_at for row in rows]

    # -- attempts --------------------------------------------------------------------------

    async def start_attempt(self, post_id: int, stage: AttemptStage, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                instagram_attempts.insert().values(post_id=post_id, stage=stage, started_at=now)
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    async def finish_attempt(
        self,
        attempt_id: int,
        *,
        stage: AttemptStage,
        outcome: AttemptOutcome,
        now: datetime,
        container_id: str | None = None,
        media_id: str | None = None,
        error: str | None = None,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(instagram_attempts)
                .where(instagram_attempts.c.id == attempt_id)
                .values(
                    stage=stage,
                    outcome=outcome,
                    container_id=container_id,
                    media_id=media_id,
                    error=error,
                    finished_at=now,
                )
            )

    async def attempts(self, post_id: int) -> list[AttemptRecord]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(instagram_attempts)
                .where(instagram_attempts.c.post_id == post_id)
                .order_by(instagram_attempts.c.id)
            )
            return [_attempt(row) for row in rows]
