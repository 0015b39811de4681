"""One account's Instagram poster as a single object: post, list, cancel, run the queue."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from carrier.clients.instagram.caption import CaptionResponder, write_caption
from carrier.clients.instagram.poster import AttemptResult, Clock, InstagramPoster, utc_now
from carrier.clients.instagram.queue import PublishQueue, QueueReport, run_queue
from carrier.clients.instagram.validation import MediaRejected
from carrier.persona.service import Persona
from carrier.store.instagram import OPEN_STATUSES, InstagramPostRepository, PostRecord

PersonaLoader = Callable[[], Awaitable[Persona]]


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What :meth:`InstagramClient.post` did with one request."""

    post: PostRecord
    new: bool
    """False when the request id was known (the request was already made before)."""
    message: str

    @property
    def published(self) -> bool:
        return self.post.status == "published"


class InstagramClient:
    """Posting for one agent: everything it needs is handed in (see
    :func:`carrier.bootstrap.build_instagram_client`)."""

    def __init__(
        self,
        agent_id: str,
        repo: InstagramPostRepository,
        poster: InstagramPoster,
        queue: PublishQueue,
        *,
        responder: CaptionResponder | None = None,
        persona: PersonaLoader | None = None,
        clock: Clock = utc_now,
        closers: tuple[Callable[[], Awaitable[None]], ...] = (),
    ) -> None:
        self.agent_id = agent_id
        self._repo = repo
        self._poster = poster
        self._queue = queue
        self._responder = responder
        self._persona = persona
        self._clock = clock
        self._closers = closers

    async def caption_for(self, about: str = "", rng: random.Random | None = None) -> str:
        """A caption in the persona's voice (LLM when configured, Markov otherwise)."""
        if self._responder is None or self._persona is None:
            raise RuntimeError("this client was built without a caption responder")
        persona = await self._persona()
        return await write_caption(
            self._responder,
            persona,
            self.agent_id,
            about=about,
            limits=self._poster.limits,
            rng=rng,
        )

    async def post(
        self,
        path: Path,
        *,
        caption: str | None = None,
        generate_caption: bool = False,
        about: str = "",
        request_id: str | None = None,
    ) -> PostOutcome:
        """Validate, upload and publish ``path`` now, or queue it when the publishing
        limit is reached.  Raises :class:`MediaRejected` (nothing uploaded or recorded) for
        a bad file or caption, and :class:`~carrier.clients.instagram.graph.TokenExpired`
        (the post stays queued) when the token must be replaced."""
        if caption is not None and generate_caption:
            raise MediaRejected("give a caption or ask for a generated one, not both")
        text = await self.caption_for(about) if generate_caption else (caption or "")
        post, _media, new = await self._poster.submit(
            self.agent_id, path, text, request_id=request_id
        )
        if post.status == "published":
            return PostOutcome(
                post,
                new,
                f"already published as media {post.media_id or '(unknown id)'} "
                f"(post #{post.id}); not published again",
            )
        if post.status == "publishing" and not _lease_expired(post, self._clock):
            return PostOutcome(post, new, f"post #{post.id} is being published right now")
        result = await self._queue.publish_or_queue(post)
        return PostOutcome(result.post, new, _describe(result))

    async def queued(self, *, include_done: bool = False) -> list[PostRecord]:
        """Posts waiting or being published (with ``include_done``: every post)."""
        statuses = None if include_done else OPEN_STATUSES
        return await self._repo.list_posts(self.agent_id, statuses)

    async def get(self, post_id: int) -> PostRecord | None:
        return await self._repo.get(self.agent_id, post_id)

    async def cancel(self, post_id: int) -> bool:
        """Cancel a queued (or failed) post; False if it is published, publishing or gone."""
        return await self._repo.cancel(self.agent_id, post_id, now=self._clock())

    async def run_queue(self) -> QueueReport:
        """Publish what the limit allows now; an async function a scheduler can call."""
        return await run_queue(self._queue, self.agent_id)

    async def aclose(self) -> None:
        for close in self._closers:
            await close()


def _lease_expired(post: PostRecord, clock: Clock) -> bool:
    return post.lease_until is None or post.lease_until < clock()


def _describe(result: AttemptResult) -> str:
    post = result.post
    if post.status == "published":
        return f"post #{post.id}: {result.message}"
    if post.status == "failed":
        return f"post #{post.id} failed: {post.error}"
    when = f"; next try after {post.not_before:%Y-%m-%d %H:%M} UTC" if post.not_before else ""
    return f"post #{post.id} is queued: {result.message or post.error or 'waiting'}{when}"
