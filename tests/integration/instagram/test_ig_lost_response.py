"""Publish succeeded but the answer was lost: the post is detected as published, never
published a second time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from ig_support import ACCOUNT_ID, TOKEN, ClientFactory, FakeClock, samples
from pydantic import SecretStr

from carrier.clients.instagram.graph import GraphClient
from carrier.clients.instagram.validation import file_sha256
from carrier.store.store import Store
from carrier.testing.graph_api import Container, FakeGraphAPI, LostResponse


@pytest.mark.parametrize("mode", ["drop", "500"])
async def test_a_lost_publish_answer_is_detected_not_repeated(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    mode: LostResponse,
) -> None:
    graph.lose_publish_response(mode)
    client = make_client()
    photo = samples.jpeg(media_dir / "a.jpg")

    outcome = await client.post(photo, caption="did it go out?")

    (media,) = graph.published
    assert outcome.post.status == "published"
    assert outcome.post.media_id == media.id  # found among the recent media
    assert graph.publish_calls == 1
    (attempt,) = await store.instagram.attempts(outcome.post.id)
    assert (attempt.stage, attempt.outcome) == ("verify", "published")

    # Retrying the same request, or running the queue, publishes nothing more.
    again = await client.post(photo, caption="did it go out?")
    assert again.post.id == outcome.post.id and not again.new
    assert (await client.run_queue()).results == []
    assert graph.publish_calls == 1 and len(graph.published) == 1


async def test_when_even_the_check_fails_the_next_run_verifies_before_publishing(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    clock: FakeClock,
) -> None:
    client = make_client()
    graph.lose_publish_response("drop")
    graph.after_next_publish(lambda _c: graph.rate_limit(times=1, endpoint="status"))

    outcome = await client.post(samples.jpeg(media_dir / "a.jpg"), caption="unknown")

    post = outcome.post
    assert post.status == "queued"
    assert post.publish_requested_at is not None
    assert (await store.instagram.attempts(post.id))[-1].outcome == "unknown"
    assert len(graph.published) == 1 and graph.publish_calls == 1
    # Until it is verified, the post counts against the limit: it may have gone out.
    allowance = await client._queue.allowance("fish")
    assert allowance.used_local == 1

    assert post.not_before is not None
    clock.now = post.not_before
    report = await client.run_queue()
    assert [p.id for p in report.published] == [post.id]
    assert report.published[0].media_id == graph.published[0].id
    assert graph.publish_calls == 1 and len(graph.published) == 1


async def test_an_expired_container_whose_publish_went_out_is_not_replaced(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client()
    photo = samples.jpeg(media_dir / "a.jpg")
    graph.lose_publish_response("500")

    def expire(container: Container) -> None:
        container.status_code = "EXPIRED"

    graph.after_next_publish(expire)
    first = await client.post(photo, caption="expired but posted")
    assert first.post.status == "queued"  # EXPIRED, not PUBLISHED: unknown for now

    clock.advance(minutes=2)
    report = await client.run_queue()
    assert [p.status for p in report.published] == ["published"]
    assert report.published[0].media_id == graph.published[0].id
    assert len(graph.requests_to("media")) == 1  # no second container
    assert graph.publish_calls == 1


async def test_an_expired_container_that_was_never_published_is_replaced(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    graph.expire_next_container()
    outcome = await make_client().post(samples.jpeg(media_dir / "a.jpg"), caption="fresh")
    assert outcome.published
    assert len(graph.requests_to("media")) == 2
    assert graph.published[0].container_id == outcome.post.container_id


async def test_a_worker_that_died_after_publishing_leaves_a_post_that_is_verified(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    clock: FakeClock,
) -> None:
    """A crash between the publish call and recording its answer: the post is still
    'publishing' under the dead worker's lease; on Instagram the container is PUBLISHED."""
    client = make_client()
    graph.fetch_media = False
    photo = samples.jpeg(media_dir / "a.jpg")
    now = clock()
    post, _created = await store.instagram.create(
        agent_id="fish",
        request_id="crashed",
        media_kind="image",
        local_path=str(photo),
        sha256=file_sha256(photo),
        size_bytes=photo.stat().st_size,
        caption="crash test",
        now=now,
    )
    assert await store.instagram.claim(post.id, now=now, lease_until=now + timedelta(minutes=5))
    async with GraphClient(ACCOUNT_ID, SecretStr(TOKEN), base_url=graph.url) as api:
        container_id = await api.create_container(
            caption="crash test", image_url="http://127.0.0.1:9/a.jpg"
        )
        await api.wait_until_processed(container_id, interval=0.01, max_wait=1)
        await store.instagram.update(
            post.id,
            now=now,
            media_url="http://127.0.0.1:9/a.jpg",
            container_id=container_id,
            container_created_at=now,
            publish_requested_at=now,
        )
        await api.publish(container_id)  # ... and the worker dies here
    assert graph.publish_calls == 1

    # While the lease holds nobody touches the post; after it, the runner verifies it.
    assert (await client.run_queue()).results == []
    clock.advance(minutes=10)
    report = await client.run_queue()
    assert [p.status for p in report.published] == ["published"]
    assert report.published[0].media_id == graph.published[0].id
    assert graph.publish_calls == 1 and len(graph.published) == 1


# -- finding the media id by caption: empty and repeated captions ---------------------------


async def publish_elsewhere(graph: FakeGraphAPI, caption: str) -> str:
    """Another app publishes on the same account (the stand-in does not fetch the URL)."""
    fetching, graph.fetch_media = graph.fetch_media, False
    try:
        async with GraphClient(ACCOUNT_ID, SecretStr(TOKEN), base_url=graph.url) as api:
            container_id = await api.create_container(
                caption=caption, image_url="http://127.0.0.1:9/elsewhere.jpg"
            )
            await api.wait_until_processed(container_id, interval=0.01, max_wait=1)
            return await api.publish(container_id)
    finally:
        graph.fetch_media = fetching


async def test_an_empty_caption_is_matched_by_its_time(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    clock: FakeClock,
) -> None:
    """Every caption-less post matches an empty caption; the window around the publish call
    leaves out the one made an hour earlier."""
    earlier = await publish_elsewhere(graph, "")
    clock.advance(hours=1)
    graph.lose_publish_response("drop")

    outcome = await make_client().post(samples.jpeg(media_dir / "a.jpg"), caption="")

    ours = graph.published[-1]
    assert ours.id != earlier and ours.caption == ""
    assert outcome.post.status == "published"
    assert outcome.post.media_id == ours.id
    assert graph.publish_calls == 2  # the other app's and ours, once


@pytest.mark.parametrize("caption", ["", "gm #pond"])
async def test_a_caption_shared_by_another_media_in_the_window_leaves_the_id_unknown(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    caption: str,
) -> None:
    """Two media could be ours: the post is published (the container says so) with its media
    id unknown and a note saying why, rather than a guess; it is never published again."""
    other = await publish_elsewhere(graph, caption)
    graph.lose_publish_response("drop")
    client = make_client()
    photo = samples.jpeg(media_dir / "a.jpg")

    outcome = await client.post(photo, caption=caption)

    ours = graph.published[-1].id
    post = outcome.post
    assert post.status == "published" and outcome.published
    assert post.media_id is None
    assert post.published_at is not None
    (attempt,) = await store.instagram.attempts(post.id)
    assert (attempt.stage, attempt.outcome, attempt.media_id) == ("verify", "published", None)
    note = attempt.error or ""
    assert f"container {post.container_id} is PUBLISHED" in note
    assert "its media id is unknown: 2 recent media" in note
    assert ours in note and other in note and "none was picked" in note
    assert "media id is unknown" in outcome.message

    # It counts as published: no retry, no queue run publishes it again.
    again = await client.post(photo, caption=caption)
    assert again.post.id == post.id and not again.new
    assert (await client.run_queue()).results == []
    assert graph.publish_calls == 2 and len(graph.published) == 2


async def test_a_caption_repeated_by_our_own_earlier_post_finds_the_new_media(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path
) -> None:
    """Media already recorded for another post are not candidates."""
    client = make_client()
    first = await client.post(samples.jpeg(media_dir / "a.jpg", seed=1), caption="daily fish")
    assert first.published and first.post.media_id == graph.published[0].id

    graph.lose_publish_response("500")
    second = await client.post(samples.jpeg(media_dir / "b.jpg", seed=2), caption="daily fish")

    assert second.post.id != first.post.id
    assert second.post.status == "published"
    assert second.post.media_id == graph.published[1].id != first.post.media_id
    assert graph.publish_calls == 2


async def test_a_later_media_with_the_same_caption_is_not_taken_for_ours(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
    clock: FakeClock,
) -> None:
    """Verified by a later run, after the same caption was posted again elsewhere: the newest
    match is not ours; the one dated at our publish call is."""
    client = make_client()
    graph.lose_publish_response("drop")
    graph.after_next_publish(lambda _c: graph.rate_limit(times=1, endpoint="status"))
    outcome = await client.post(samples.jpeg(media_dir / "a.jpg"), caption="same words")
    assert outcome.post.status == "queued"  # outcome unknown for now
    ours = graph.published[0].id

    clock.advance(minutes=30)
    newer = await publish_elsewhere(graph, "same words")
    report = await client.run_queue()

    (post,) = report.published
    assert post.id == outcome.post.id
    assert post.media_id == ours != newer
    assert graph.publish_calls == 2
