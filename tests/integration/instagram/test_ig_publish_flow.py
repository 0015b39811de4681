"""The whole post, for real: FTP upload -> Graph API container -> poll -> publish, recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from ig_support import ClientFactory, FakeClock, FtpTestServer, samples, settle

from carrier.clients.instagram.graph import TokenExpired
from carrier.clients.instagram.validation import MediaRejected, file_sha256
from carrier.store.store import Store
from carrier.testing.graph_api import FakeGraphAPI


async def test_an_image_is_uploaded_and_published(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    ftp_server: FtpTestServer,
    store: Store,
    media_dir: Path,
    environ: dict[str, str],
) -> None:
    photo = samples.jpeg(media_dir / "photo.jpg", 1080, 1350, seed=1)
    client = make_client()

    outcome = await client.post(photo, caption="Blub from the pond #fish")

    assert outcome.published and outcome.new
    post = outcome.post
    (media,) = graph.published
    assert post.media_id == media.id
    assert media.caption == "Blub from the pond #fish"
    # The file is on the FTP server under its content-derived name, and nothing else is.
    sha = file_sha256(photo)
    assert ftp_server.files() == [f"{sha[:32]}.jpg"]
    assert post.media_url == f"{environ['HTTP_SERVER']}/{sha[:32]}.jpg"
    # Instagram (the stand-in) downloaded exactly that file from HTTP_SERVER.
    container = graph.containers[post.container_id or ""]
    assert container.kind == "image"
    assert container.fetched_sha256 == sha
    # Everything is recorded: status, ids, timestamps, the attempt.
    stored = await store.instagram.get("fish", post.id)
    assert stored is not None
    assert stored.status == "published"
    assert stored.container_id == container.id
    assert stored.published_at is not None and stored.container_created_at is not None
    assert stored.publish_requested_at is not None
    assert stored.attempt_count == 1 and stored.error is None
    (attempt,) = await store.instagram.attempts(post.id)
    assert (attempt.stage, attempt.outcome) == ("publish", "published")
    assert (attempt.container_id, attempt.media_id) == (container.id, media.id)
    assert attempt.finished_at is not None


async def test_a_video_is_published_as_a_reel(
    make_client: ClientFactory, graph: FakeGraphAPI, ftp_server: FtpTestServer, media_dir: Path
) -> None:
    clip = samples.video(media_dir / "clip.mov", brand=b"qt  ", seconds=8)
    outcome = await make_client().post(clip, caption="")

    assert outcome.published
    (create,) = graph.requests_to("media")
    assert create.form["media_type"] == "REELS"
    assert create.form["video_url"].endswith(".mov")
    assert "image_url" not in create.form
    assert graph.containers[outcome.post.container_id or ""].kind == "video"
    assert [name.endswith(".mov") for name in ftp_server.files()] == [True]


async def test_slow_processing_is_polled_until_finished(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path
) -> None:
    graph.slow_processing(polls=3)
    outcome = await make_client().post(samples.jpeg(media_dir / "a.jpg"), caption="slow")
    assert outcome.published
    assert len(graph.requests_to("status")) == 4  # 3 x IN_PROGRESS, then FINISHED


async def test_processing_past_the_bounded_wait_leaves_the_post_queued(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    graph.slow_processing(polls=10_000)
    client = make_client(poll_interval_seconds=0.01, poll_timeout_seconds=0.1)

    outcome = await client.post(samples.jpeg(media_dir / "a.jpg"), caption="slow")

    assert outcome.post.status == "queued"
    assert "still processing" in (outcome.post.error or "")
    assert graph.published == []
    container_id = outcome.post.container_id
    # Instagram finishes later; the next run publishes the same container, no new one.
    graph.containers[container_id or ""].polls_left = 0
    clock.advance(minutes=1)
    report = await client.run_queue()
    assert [p.id for p in report.published] == [outcome.post.id]
    assert len(graph.requests_to("media")) == 1
    assert graph.published[0].container_id == container_id


async def test_a_container_in_error_fails_the_post_with_its_status(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path
) -> None:
    graph.fail_next_container("2207026: The video format is not supported")
    client = make_client()

    outcome = await client.post(samples.jpeg(media_dir / "a.jpg"), caption="x")

    assert outcome.post.status == "failed"
    assert "2207026: The video format is not supported" in (outcome.post.error or "")
    assert "container ERROR" in outcome.message
    assert graph.publish_calls == 0
    (attempt,) = await store.instagram.attempts(outcome.post.id)
    assert (attempt.stage, attempt.outcome) == ("processing", "failed")
    # A failed post is not retried by the queue runner.
    report = await client.run_queue()
    assert report.results == [] and graph.publish_calls == 0


async def test_an_expired_token_is_a_clear_error_and_the_post_waits(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path, clock: FakeClock
) -> None:
    graph.expire_token()
    client = make_client()
    photo = samples.jpeg(media_dir / "a.jpg")

    with pytest.raises(TokenExpired) as caught:
        await client.post(photo, caption="x")

    assert "INSTAGRAM_ACCESS_TOKEN" in str(caught.value)
    assert graph.access_token not in str(caught.value)
    (post,) = await store.instagram.list_posts("fish")
    assert post.status == "queued"
    assert "INSTAGRAM_ACCESS_TOKEN" in (post.error or "")
    assert graph.published == []

    # The operator replaces the token; the queue publishes the post, once.
    graph.expire_token(False)
    clock.advance(minutes=16)
    report = await client.run_queue()
    assert [p.id for p in report.published] == [post.id]
    assert len(graph.published) == 1


async def test_a_rate_limited_call_is_retried_later(
    make_client: ClientFactory, graph: FakeGraphAPI, store: Store, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client()
    graph.rate_limit(times=1, endpoint="media", code=17)

    outcome = await client.post(samples.jpeg(media_dir / "a.jpg"), caption="later")

    post = outcome.post
    assert post.status == "queued"
    assert post.not_before is not None and post.not_before > clock.now
    (attempt,) = await store.instagram.attempts(post.id)
    assert (attempt.stage, attempt.outcome) == ("container", "rate_limited")
    # Not yet due: the runner leaves it alone.
    assert (await client.run_queue()).results == []
    assert graph.published == []
    # Due: published.
    clock.now = post.not_before
    report = await client.run_queue()
    assert [p.id for p in report.published] == [post.id]


async def test_http_429_with_retry_after_sets_the_next_try(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    graph.rate_limit(times=1, endpoint="publish", http_status=429, retry_after=120)
    outcome = await make_client().post(samples.jpeg(media_dir / "a.jpg"), caption="x")
    assert outcome.post.status == "queued"
    assert outcome.post.not_before == clock.now + timedelta(seconds=120)
    # The rejected publish call does not count as a possible post.
    assert outcome.post.publish_requested_at is None


async def test_an_ftp_connection_dropped_mid_upload_is_retried_without_a_second_file(
    make_client: ClientFactory, graph: FakeGraphAPI, ftp_server: FtpTestServer, media_dir: Path
) -> None:
    big = samples.jpeg(media_dir / "big.jpg", noise=True, seed=3)
    assert big.stat().st_size > 256 * 1024  # several chunks: the drop happens mid-upload
    ftp_server.drop_uploads = 1

    outcome = await make_client().post(big, caption="persistent fish")
    await settle()

    assert outcome.published
    assert ftp_server.dropped == 1
    assert ftp_server.logins == 2  # the dropped try and the retry
    assert ftp_server.files() == [f"{file_sha256(big)[:32]}.jpg"]  # no .part left, no twin
    assert (ftp_server.root / "media" / ftp_server.files()[0]).read_bytes() == big.read_bytes()
    assert len(graph.published) == 1 and len(graph.requests_to("media")) == 1


async def test_the_same_request_twice_is_one_post(
    make_client: ClientFactory, graph: FakeGraphAPI, ftp_server: FtpTestServer, media_dir: Path
) -> None:
    client = make_client()
    photo = samples.jpeg(media_dir / "a.jpg")
    first = await client.post(photo, caption="only once")
    again = await client.post(photo, caption="only once")

    assert first.published and not again.new
    assert again.post.id == first.post.id
    assert "not published again" in again.message
    assert len(graph.published) == 1 and graph.publish_calls == 1
    assert len(ftp_server.files()) == 1
    # An explicit, different request id is a new post of the same file.
    other = await client.post(photo, caption="only once", request_id="second-post")
    assert other.new and other.published and len(graph.published) == 2
    assert len(ftp_server.files()) == 1  # same content, same remote file


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("caption", "characters long"),
        ("hashtags", "31 hashtags"),
        ("mentions", "21 @-mentions"),
        ("png", "is a PNG image"),
        ("mpo", r"extended JPEG \(MPO\)"),
        ("missing", "does not exist"),
        ("tall", "aspect ratio"),
        ("short-video", "from 3 seconds"),
    ],
)
async def test_nothing_is_uploaded_or_recorded_when_validation_fails(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    ftp_server: FtpTestServer,
    store: Store,
    media_dir: Path,
    bad: str,
    message: str,
) -> None:
    photo = samples.jpeg(media_dir / "ok.jpg")
    caption = "fine"
    if bad == "caption":
        caption = "x" * 2201
    elif bad == "hashtags":
        caption = " ".join(f"#t{i}" for i in range(31))
    elif bad == "mentions":
        caption = " ".join(f"@u{i}" for i in range(21))
    elif bad == "png":
        photo = samples.png(media_dir / "disguised.jpg")
    elif bad == "mpo":
        photo = samples.mpo(media_dir / "stereo.jpg")
    elif bad == "missing":
        photo = media_dir / "gone.jpg"
    elif bad == "tall":
        photo = samples.jpeg(media_dir / "tall.jpg", 1080, 1920)
    elif bad == "short-video":
        photo = samples.video(media_dir / "short.mp4", seconds=1)

    with pytest.raises(MediaRejected, match=message):
        await make_client().post(photo, caption=caption)
    await settle()

    assert ftp_server.files() == []
    assert ftp_server.logins == 0
    assert graph.requests == []
    assert await store.instagram.list_posts("fish") == []


async def test_a_queued_file_that_changed_is_not_published(
    make_client: ClientFactory, graph: FakeGraphAPI, media_dir: Path, clock: FakeClock
) -> None:
    client = make_client(posts_per_24h=1)
    await client.post(samples.jpeg(media_dir / "first.jpg", seed=1), caption="one")
    second = samples.jpeg(media_dir / "second.jpg", seed=2)
    queued = await client.post(second, caption="two")
    assert queued.post.status == "queued"  # uploaded already, waiting for the limit
    assert queued.post.media_url is not None
    # The upload happened at once, so a change of the local file afterwards does not matter.
    samples.jpeg(second, seed=9)
    clock.advance(hours=25)
    report = await client.run_queue()
    assert [p.id for p in report.published] == [queued.post.id]
    assert graph.containers[report.published[0].container_id or ""].fetched_sha256 == (
        queued.post.sha256
    )
