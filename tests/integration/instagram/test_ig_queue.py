"""The rolling 24-hour limit, checked against the Graph API and the local record; the queue."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from ig_support import CHARACTER_FILE, ClientFactory, FakeClock, samples

from carrier.clients.instagram.validation import check_caption
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.persona.service import ensure_persona
from carrier.store.store import Store
from carrier.testing.graph_api import FakeGraphAPI


def photos(folder: Path, count: int) -> list[Path]:
    return [samples.jpeg(folder / f"p{i}.jpg", seed=i) for i in range(count)]


async def test_posts_beyond_the_limit_wait_in_the_queue(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client(posts_per_24h=2)
    outcomes = []
    for index, photo in enumerate(photos(media_dir, 3)):
        outcomes.append(await client.post(photo, caption=f"post {index}"))
        clock.advance(minutes=10)

    assert [o.post.status for o in outcomes] == ["published", "published", "queued"]
    assert len(graph.published) == 2
    waiting = outcomes[2].post
    assert waiting.media_url is not None  # uploaded already; only the publish waits
    assert [p.id for p in await client.queued()] == [waiting.id]

    # The limit still holds: the run reports when the first slot opens.
    report = await client.run_queue()
    assert report.published == [] and [p.id for p in report.waiting] == [waiting.id]
    assert report.allowance is not None and report.allowance.remaining == 0
    first_published = outcomes[0].post.published_at
    assert first_published is not None
    assert report.allowance.next_slot == first_published + timedelta(hours=24)

    # 24 hours after the first post, one slot is free again.
    clock.now = first_published + timedelta(hours=24, seconds=1)
    report = await client.run_queue()
    assert [p.id for p in report.published] == [waiting.id]
    assert await client.queued() == []
    assert len(graph.published) == 3


async def test_the_api_quota_wins_when_it_is_lower(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    graph.quota_total = 1
    client = make_client(posts_per_24h=25)
    first, second = [await client.post(p, caption=p.name) for p in photos(media_dir, 2)]
    assert [first.post.status, second.post.status] == ["published", "queued"]
    assert graph.publish_calls == 1  # never asked beyond the quota


async def test_posts_made_elsewhere_count_through_quota_usage(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    graph.other_apps_usage = 24
    client = make_client()  # 25 per 24 h
    first, second = [await client.post(p, caption=p.name) for p in photos(media_dir, 2)]
    assert [first.post.status, second.post.status] == ["published", "queued"]
    allowance = await client._queue.allowance("fish")
    assert (allowance.used_remote, allowance.used_local, allowance.remaining) == (25, 1, 0)


async def test_the_local_record_counts_even_when_the_api_forgets(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    client = make_client(posts_per_24h=1)
    await client.post(photos(media_dir, 1)[0], caption="one")
    graph.published.clear()  # the API now reports no usage at all
    queued = await client.post(samples.jpeg(media_dir / "x.jpg", seed=99), caption="two")
    assert queued.post.status == "queued"


async def test_the_publishing_limit_error_keeps_the_post_queued(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    graph.rate_limit(times=1, endpoint="publish", code=9)
    outcome = await make_client().post(photos(media_dir, 1)[0], caption="limit")
    assert outcome.post.status == "queued"
    assert "rate limited" in (outcome.post.error or "")
    assert graph.published == []


async def test_a_cancelled_post_is_never_published(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client(posts_per_24h=1)
    published, queued = [await client.post(p, caption=p.name) for p in photos(media_dir, 2)]
    assert queued.post.status == "queued"

    assert await client.cancel(queued.post.id)
    assert not await client.cancel(published.post.id)  # published: cannot be cancelled
    assert not await client.cancel(9999)
    assert await client.queued() == []
    assert (await client.get(queued.post.id)).status == "cancelled"  # type: ignore[union-attr]

    clock.advance(hours=25)
    report = await client.run_queue()
    assert report.results == [] and len(graph.published) == 1


async def test_the_runner_stops_when_rate_limited(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client(posts_per_24h=1)
    for photo in photos(media_dir, 3):
        await client.post(photo, caption=photo.name)
    clock.advance(hours=25)
    graph.rate_limit(times=1, endpoint="media")
    report = await client.run_queue()
    assert report.stopped is not None and "rate limited" in report.stopped
    assert len(report.results) == 1 and len(report.waiting) == 1
    assert len(graph.published) == 1


class ScriptedLLM:
    """A Generator as the LLM chain would be (the responder's contract)."""

    name = "llm"

    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[ReplyRequest] = []

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText:
        self.requests.append(request)
        return GeneratedText(self.text, "llm:test")


async def test_a_generated_caption_speaks_with_markov_when_no_llm_is_configured(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path
) -> None:
    await ensure_persona(store, "fish", CHARACTER_FILE)
    client = make_client()
    outcome = await client.post(photos(media_dir, 1)[0], generate_caption=True, about="pond")
    assert outcome.published
    caption = outcome.post.caption
    assert caption.strip()
    assert check_caption(caption) == caption
    assert graph.published[0].caption == caption


async def test_a_generated_caption_uses_the_llm_when_there_is_one(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path
) -> None:
    await ensure_persona(store, "fish", CHARACTER_FILE)
    llm = ScriptedLLM("Fresh from the pond, scales gleaming #fishlife @everyone")
    outcome = await make_client(llm=llm).post(
        photos(media_dir, 1)[0], generate_caption=True, about="a sunny pond"
    )
    assert outcome.post.caption == "Fresh from the pond, scales gleaming #fishlife everyone"
    (request,) = llm.requests
    assert request.purpose == "proactive" and "a sunny pond" in request.status_text
    assert request.persona.name  # the persona read from the database
