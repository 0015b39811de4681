"""The two-step publish of one post, recorded step by step so it is never done twice.

A post (see :mod:`carrier.store.instagram`) is advanced by :meth:`InstagramPoster.process`,
one *attempt* at a time; every attempt is a row with its stage, outcome and error.  The
steps, each skipped when an earlier attempt already did it:

1. **upload** the file by FTP (its content-derived name makes a retry replace, not add);
2. **container**: ``POST /{ig-user-id}/media``; its id is stored before anything else;
3. **processing**: poll the container until it leaves ``IN_PROGRESS``, at most
   ``poll_timeout`` seconds (then the post waits for the next run);
4. **publish**: ``publish_requested_at`` is stored *before* ``media_publish`` is called.

Never publishing twice rests on two rules: a post has one container at a time (a container
can be published once), and a new container is made only when the old one cannot have been
published.  When the publish answer is lost (dropped connection, HTTP 5xx), the container's
``status_code`` says what happened: ``PUBLISHED`` -> the post is published, ``FINISHED`` ->
the publish did not happen and the next attempt publishes the same container again.  An
``EXPIRED`` container that had a publish call is checked against the recent media before it
is replaced.

Finding the media id of a post whose publish answer was lost: the Graph API links no media
object to its container (an IG Container has only ``id``, ``status``, ``status_code`` and
``copyright_check_status``; IG Media has no container field), so the account's recent media
are matched by caption, media type (``IMAGE`` / ``VIDEO``; ``FEED`` / ``REELS``) and a time
window around the publish call, leaving out media already recorded for other posts.  Exactly
one candidate is the post's media; none or several (an empty or repeated caption) leave the
media id unknown, said so in the record, rather than a guess.  Where the container does not
say PUBLISHED (``EXPIRED``, or a container dropped after a publish call), any candidate
counts as "it may have gone out", so the post is recorded as published, never published
again; when the recent media cannot be listed, the post waits for the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carrier.clients.instagram.ftp import FtpUploader, UploadFailed, public_url
from carrier.clients.instagram.graph import (
    ContainerStatus,
    GraphClient,
    GraphError,
    GraphUnavailable,
    PublishedMedia,
    RateLimited,
    Sleep,
    TokenExpired,
)
from carrier.clients.instagram.validation import (
    MediaFile,
    MediaLimits,
    MediaRejected,
    inspect_media,
    validate_post,
)
from carrier.store.instagram import (
    AttemptOutcome,
    AttemptStage,
    InstagramPostRepository,
    PostRecord,
    PostStatus,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MAX_REQUEST_ID_CHARS = 64
# How long to wait before the next attempt, by what stopped this one.
RETRY_UNKNOWN = timedelta(seconds=60)
RETRY_UNAVAILABLE = timedelta(minutes=5)
RETRY_TOKEN = timedelta(minutes=15)
# A media item can be the post's when Instagram dated it at most CLOCK_SKEW before the publish
# call, and at most PUBLISH_WINDOW after it (the call's own time, the clocks' difference).
CLOCK_SKEW = timedelta(minutes=5)
PUBLISH_WINDOW = timedelta(minutes=10)
# IG Media media_type / media_product_type of what each kind of post becomes.
MEDIA_TYPES = {"image": ("IMAGE", "FEED"), "video": ("VIDEO", "REELS")}


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_request_id(agent_id: str, sha256: str, caption: str) -> str:
    """The idempotency key of "post this file with this caption": the same request twice is
    one post.  (Pass an explicit request id to post the same thing again on purpose.)"""
    digest = hashlib.sha256(f"{agent_id}\0{sha256}\0{caption}".encode()).hexdigest()
    return digest[:40]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one :meth:`InstagramPoster.process` call did."""

    post: PostRecord
    outcome: AttemptOutcome | None
    """``None`` when nothing was attempted (another worker holds the post)."""
    message: str = ""
    published_now: bool = False
    """True when this attempt's publish call succeeded (it used one slot of the quota)."""


@dataclass(frozen=True, slots=True)
class MediaMatch:
    """Which of the account's recent media could be a post (see :func:`match_media`)."""

    candidates: tuple[str, ...] = ()
    listed: bool = True
    """False when the recent media could not be listed (``problem`` says why)."""
    problem: str = ""

    @property
    def media_id(self) -> str | None:
        """The post's media id: the only candidate; ``None`` when there are none or several."""
        return self.candidates[0] if len(self.candidates) == 1 else None

    def why_unknown(self) -> str:
        """Why :attr:`media_id` is ``None``, for the record (empty when it is known)."""
        if not self.listed:
            return f"its media id is unknown: the recent media could not be listed ({self.problem})"
        if not self.candidates:
            return (
                "its media id is unknown: none of the account's recent media matches its "
                "caption, type and time"
            )
        if len(self.candidates) > 1:
            return (
                f"its media id is unknown: {len(self.candidates)} recent media "
                f"({', '.join(self.candidates)}) match its caption, type and time, so none "
                "was picked"
            )
        return ""


def match_media(
    recent: Sequence[PublishedMedia],
    *,
    caption: str,
    media_kind: str,
    since: datetime,
    until: datetime,
    exclude: Collection[str] = (),
) -> MediaMatch:
    """The media in ``recent`` that could be a post of ``media_kind`` with ``caption``
    published between ``since`` and ``until``, leaving out the ids in ``exclude`` (media
    already recorded for other posts).  A type or time the API did not send does not rule a
    media item out."""
    media_type, product_type = MEDIA_TYPES.get(media_kind, (None, None))
    wanted = caption.strip()
    found = []
    for item in recent:
        if item.id in exclude or item.caption.strip() != wanted:
            continue
        if item.media_type is not None and item.media_type != media_type:
            continue
        if item.media_product_type is not None and item.media_product_type != product_type:
            continue
        if item.timestamp is not None and not since <= item.timestamp <= until:
            continue
        found.append(item.id)
    return MediaMatch(tuple(found))


@dataclass(slots=True)
class _Attempt:
    id: int
    stage: AttemptStage
    container_id: str | None = None
    media_id: str | None = None
    notes: list[str] = field(default_factory=list)


class InstagramPoster:
    """Validates, records and publishes posts of one account."""

    def __init__(
        self,
        repo: InstagramPostRepository,
        graph: GraphClient,
        uploader: FtpUploader,
        http_server: str,
        *,
        limits: MediaLimits | None = None,
        poll_interval: float = 5.0,
        poll_timeout: float = 300.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = repo
        self._graph = graph
        self._uploader = uploader
        self._http_server = http_server
        self._limits = limits or MediaLimits()
        self._poll_interval = poll_interval
        self._poll_timeout = poll_timeout
        self._clock = clock
        self._sleep = sleep
        # A worker that died mid-attempt frees its post after this long.
        self._lease = timedelta(seconds=poll_timeout + 600)

    @property
    def limits(self) -> MediaLimits:
        return self._limits

    # -- recording a request ---------------------------------------------------------------

    async def submit(
        self, agent_id: str, path: Path, caption: str, *, request_id: str | None = None
    ) -> tuple[PostRecord, MediaFile, bool]:
        """Validate ``path`` and ``caption`` (raising :class:`MediaRejected`, with nothing
        recorded or uploaded) and record the post as queued.  A request id seen before
        returns its post (re-queued if it had failed or was cancelled); the flag says whether
        the post is new."""
        media = await asyncio.to_thread(validate_post, path, caption, self._limits)
        local_path = str(await asyncio.to_thread(path.resolve))
        key = (
            request_id
            if request_id is not None
            else default_request_id(agent_id, media.sha256, caption)
        )
        if not key.strip() or len(key) > MAX_REQUEST_ID_CHARS:
            raise MediaRejected(f"a request id must be 1..{MAX_REQUEST_ID_CHARS} characters")
        post, created = await self._repo.create(
            agent_id=agent_id,
            request_id=key,
            media_kind=media.kind,
            local_path=local_path,
            sha256=media.sha256,
            size_bytes=media.size_bytes,
            caption=caption,
            now=self._clock(),
        )
        if not created and post.sha256 != media.sha256:
            raise MediaRejected(
                f"request id {key!r} already belongs to post #{post.id} with another file"
            )
        if not created and post.status in ("failed", "cancelled"):
            await self._repo.update(
                post.id,
                now=self._clock(),
                status="queued",
                error=None,
                not_before=None,
                local_path=local_path,
                # A failed container cannot be reused; the publish history stays, so a post
                # that may have gone out is checked before a new container is made.
                container_id=None,
                container_created_at=None,
            )
            post = await self._reload(post)
        return post, media, created

    # -- one attempt -----------------------------------------------------------------------

    async def process(self, post: PostRecord, *, may_publish: bool) -> AttemptResult:
        """Advance ``post`` as far as it goes now.  With ``may_publish`` false (no quota
        left) it is uploaded, and a publish whose answer was lost is verified, but nothing
        new is published.  Raises :class:`TokenExpired` after recording it (every other post
        would fail the same way)."""
        now = self._clock()
        if not await self._repo.claim(post.id, now=now, lease_until=now + self._lease):
            current = await self._reload(post)
            return AttemptResult(current, None, f"post #{post.id} is {current.status}")
        post = await self._reload(post)
        attempt = _Attempt(await self._repo.start_attempt(post.id, "upload", now), "upload")
        try:
            return await self._advance(post, attempt, may_publish)
        except TokenExpired as exc:
            await self._finish(post, attempt, "queued", "failed", str(exc), retry_in=RETRY_TOKEN)
            raise
        except RateLimited as exc:
            return await self._finish(
                post,
                attempt,
                "queued",
                "rate_limited",
                str(exc),
                retry_in=timedelta(seconds=exc.retry_after),
            )
        except GraphUnavailable as exc:
            return await self._finish(
                post, attempt, "queued", "waiting", str(exc), retry_in=RETRY_UNAVAILABLE
            )
        except GraphError as exc:
            return await self._finish(post, attempt, "failed", "failed", str(exc))
        except BaseException as exc:
            # Unexpected (or cancelled): free the post for a later attempt, then re-raise.
            await asyncio.shield(
                self._finish(
                    post,
                    attempt,
                    "queued",
                    "failed",
                    f"{type(exc).__name__}: {exc}",
                    retry_in=RETRY_UNAVAILABLE,
                )
            )
            raise

    async def hold(
        self,
        post: PostRecord,
        message: str,
        *,
        outcome: AttemptOutcome = "waiting",
        retry_in: timedelta | None = None,
    ) -> AttemptResult:
        """Record an attempt that could not start (the quota check failed, say): the post
        stays queued with ``message`` until ``retry_in`` has passed."""
        now = self._clock()
        attempt = _Attempt(await self._repo.start_attempt(post.id, "container", now), "container")
        return await self._finish(post, attempt, "queued", outcome, message, retry_in=retry_in)

    async def _advance(
        self, post: PostRecord, attempt: _Attempt, may_publish: bool
    ) -> AttemptResult:
        # 1. upload
        if post.media_url is None:
            attempt.stage = "upload"
            try:
                media = await asyncio.to_thread(inspect_media, Path(post.local_path), self._limits)
            except MediaRejected as exc:
                return await self._finish(post, attempt, "failed", "failed", str(exc))
            if media.sha256 != post.sha256:
                return await self._finish(
                    post,
                    attempt,
                    "failed",
                    "failed",
                    f"{post.local_path} changed since it was queued; post it again",
                )
            try:
                name = await self._uploader.upload(media)
            except UploadFailed as exc:
                if exc.permanent:
                    return await self._finish(post, attempt, "failed", "failed", str(exc))
                return await self._finish(
                    post, attempt, "queued", "waiting", str(exc), retry_in=RETRY_UNAVAILABLE
                )
            post = await self._set(
                post, remote_name=name, media_url=public_url(self._http_server, name)
            )

        for _ in range(2):  # a second round only after replacing an expired container
            # 2. container
            if post.container_id is None:
                if post.publish_requested_at is not None:
                    went_out = await self._went_out(post, attempt, "its earlier container")
                    if went_out is not None:
                        return went_out
                attempt.stage = "container"
                if not may_publish:
                    return await self._finish(
                        post, attempt, "queued", "waiting", "waiting for the publishing limit"
                    )
                assert post.media_url is not None
                container_id = await self._graph.create_container(
                    caption=post.caption,
                    image_url=post.media_url if post.media_kind == "image" else None,
                    video_url=post.media_url if post.media_kind == "video" else None,
                )
                attempt.container_id = container_id
                post = await self._set(
                    post, container_id=container_id, container_created_at=self._clock()
                )
            assert post.container_id is not None
            attempt.container_id = post.container_id

            # 3. processing
            attempt.stage = "processing"
            status = await self._graph.wait_until_processed(
                post.container_id,
                interval=self._poll_interval,
                max_wait=self._poll_timeout,
                sleep=self._sleep,
            )
            if status.state == "IN_PROGRESS":
                return await self._finish(
                    post,
                    attempt,
                    "queued",
                    "waiting",
                    f"Instagram is still processing container {post.container_id} after "
                    f"{self._poll_timeout:g} s; the next run checks it again",
                    retry_in=timedelta(seconds=self._poll_interval),
                )
            if status.state == "ERROR":
                return await self._finish(
                    post, attempt, "failed", "failed", _container_error(status)
                )
            if status.state == "PUBLISHED":
                attempt.stage = "verify"
                match = await self._find_published(post)
                return await self._published(
                    post,
                    attempt,
                    match.media_id,
                    now_published=False,
                    note=_already_published(post.container_id, match),
                )
            if status.state == "EXPIRED":
                attempt.stage = "verify"
                if post.publish_requested_at is not None:
                    went_out = await self._went_out(
                        post, attempt, f"container {post.container_id} (EXPIRED)"
                    )
                    if went_out is not None:
                        return went_out
                attempt.notes.append(f"container {post.container_id} expired; made a new one")
                post = await self._set(post, container_id=None, container_created_at=None)
                continue

            # 4. publish (status FINISHED)
            if not may_publish:
                return await self._finish(
                    post, attempt, "queued", "waiting", "waiting for the publishing limit"
                )
            return await self._publish(post, attempt)
        return await self._finish(
            post, attempt, "queued", "waiting", "container expired twice; trying again later"
        )

    async def _publish(self, post: PostRecord, attempt: _Attempt) -> AttemptResult:
        container_id = post.container_id
        assert container_id is not None
        attempt.stage = "publish"
        post = await self._set(post, publish_requested_at=self._clock())
        try:
            media_id = await self._graph.publish(container_id)
        except (RateLimited, TokenExpired):
            # Rejected before publishing, and the container was FINISHED (not published) just
            # before: nothing went out, so the call does not count against the quota.
            await self._set(post, publish_requested_at=None)
            raise
        except GraphError as exc:
            # The answer is lost or an error: the container knows whether it was published.
            attempt.stage = "verify"
            log.warning(
                "publishing post #%d (container %s) failed (%s); checking the container",
                post.id,
                post.container_id,
                exc,
            )
            try:
                status = await self._graph.container_status(container_id)
            except (GraphUnavailable, RateLimited) as again:
                wait = timedelta(seconds=getattr(again, "retry_after", 0.0))
                return await self._finish(
                    post,
                    attempt,
                    "queued",
                    "unknown",
                    f"publish outcome unknown ({exc}); and the container could not be "
                    f"checked ({again}); the next run checks it",
                    retry_in=max(RETRY_UNKNOWN, wait),
                )
            if status.state == "PUBLISHED":
                match = await self._find_published(post)
                return await self._published(
                    post,
                    attempt,
                    match.media_id,
                    now_published=True,
                    note=_join_note(
                        f"the answer to the publish call was lost ({exc}), but container "
                        f"{container_id} is PUBLISHED",
                        match.why_unknown(),
                    ),
                )
            if isinstance(exc, GraphUnavailable):
                return await self._finish(
                    post,
                    attempt,
                    "queued",
                    "unknown",
                    f"publish outcome unknown ({exc}); container {post.container_id} is "
                    f"{status.state}, so it was not published; the next run publishes it",
                    retry_in=RETRY_UNKNOWN,
                )
            await self._set(post, publish_requested_at=None)
            if status.state == "ERROR":
                return await self._finish(
                    post, attempt, "failed", "failed", _container_error(status)
                )
            raise
        return await self._published(post, attempt, media_id, now_published=True)

    # -- helpers ---------------------------------------------------------------------------

    async def _find_published(self, post: PostRecord) -> MediaMatch:
        """Which of the account's recent media could be ``post`` (see :func:`match_media`):
        its caption and type, dated around its publish call, not recorded for another post."""
        anchor = post.publish_requested_at or post.container_created_at or post.created_at
        since = anchor - CLOCK_SKEW
        until = (
            post.publish_requested_at + PUBLISH_WINDOW
            if post.publish_requested_at is not None
            else self._clock() + CLOCK_SKEW
        )
        try:
            recent = await self._graph.recent_media()
        except (GraphUnavailable, RateLimited) as exc:
            log.warning("could not list recent media to find post #%d: %s", post.id, exc)
            return MediaMatch(listed=False, problem=str(exc))
        known = {
            other.media_id
            for other in await self._repo.list_posts(post.agent_id, ["published"])
            if other.media_id and other.id != post.id
        }
        match = match_media(
            recent,
            caption=post.caption,
            media_kind=post.media_kind,
            since=since,
            until=until,
            exclude=known,
        )
        if len(match.candidates) > 1:
            log.warning(
                "post #%d matches %d recent media (%s); its media id is left unknown",
                post.id,
                len(match.candidates),
                ", ".join(match.candidates),
            )
        return match

    async def _went_out(
        self, post: PostRecord, attempt: _Attempt, situation: str
    ) -> AttemptResult | None:
        """For a post that had a publish call but whose container does not say PUBLISHED:
        the result when a recent media item may be it (recorded as published, never
        published again) or when that cannot be told now (the post waits); ``None`` when
        nothing matches, so it was not published."""
        attempt.stage = "verify"
        match = await self._find_published(post)
        if not match.listed:
            return await self._finish(
                post,
                attempt,
                "queued",
                "unknown",
                f"the publish call for {situation} has an unknown outcome, and the recent "
                f"media could not be listed to check it ({match.problem}); the next run "
                "checks again",
                retry_in=RETRY_UNKNOWN,
            )
        if not match.candidates:
            return None
        return await self._published(
            post,
            attempt,
            match.media_id,
            now_published=False,
            note=_join_note(
                f"{situation} does not say it was published, but recent media match the "
                "post, so it counts as published and is not published again",
                match.why_unknown(),
            ),
        )

    async def _published(
        self,
        post: PostRecord,
        attempt: _Attempt,
        media_id: str | None,
        *,
        now_published: bool,
        note: str = "",
    ) -> AttemptResult:
        now = self._clock()
        attempt.media_id = media_id
        published_at = now if now_published else (post.publish_requested_at or now)
        await self._repo.update(
            post.id,
            now=now,
            status="published",
            media_id=media_id,
            published_at=published_at,
            lease_until=None,
            not_before=None,
            error=None,
        )
        await self._repo.finish_attempt(
            attempt.id,
            stage=attempt.stage,
            outcome="published",
            now=now,
            container_id=attempt.container_id,
            media_id=media_id,
            error=_join(attempt.notes, note) or None,
        )
        if media_id is None:
            message = note or "published; its media id is unknown"
            log.warning("post #%d published; %s", post.id, message)
        else:
            message = f"{note}; media {media_id}" if note else f"published as media {media_id}"
            log.info("post #%d published as media %s", post.id, media_id)
        return AttemptResult(
            await self._reload(post), "published", message, published_now=now_published
        )

    async def _finish(
        self,
        post: PostRecord,
        attempt: _Attempt,
        status: PostStatus,
        outcome: AttemptOutcome,
        message: str,
        *,
        retry_in: timedelta | None = None,
    ) -> AttemptResult:
        now = self._clock()
        await self._repo.update(
            post.id,
            now=now,
            status=status,
            lease_until=None,
            not_before=None if retry_in is None else now + retry_in,
            error=message,
        )
        await self._repo.finish_attempt(
            attempt.id,
            stage=attempt.stage,
            outcome=outcome,
            now=now,
            container_id=attempt.container_id,
            media_id=attempt.media_id,
            error=_join(attempt.notes, message),
        )
        level = logging.WARNING if outcome in ("failed", "unknown") else logging.INFO
        log.log(level, "post #%d %s at %s: %s", post.id, outcome, attempt.stage, message)
        return AttemptResult(await self._reload(post), outcome, message)

    async def _set(self, post: PostRecord, **values: object) -> PostRecord:
        await self._repo.update(post.id, now=self._clock(), **values)
        return await self._reload(post)

    async def _reload(self, post: PostRecord) -> PostRecord:
        current = await self._repo.get(post.agent_id, post.id)
        assert current is not None
        return current


def _container_error(status: ContainerStatus) -> str:
    detail = status.message or "no details given"
    return f"Instagram could not process the media (container ERROR): {detail}"


def _already_published(container_id: str | None, match: MediaMatch) -> str:
    return _join_note(
        f"already published (container {container_id} is PUBLISHED); not published again",
        match.why_unknown(),
    )


def _join_note(first: str, second: str) -> str:
    return f"{first}; {second}" if second else first


def _join(notes: list[str], message: str) -> str:
    return "; ".join([*notes, message] if message else notes)
