"""Secrets never reach logs, errors or the database; the database checks its own rules."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ig_support import FTP_PASSWORD, TOKEN, ClientFactory, FakeClock, FtpTestServer, samples
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from carrier.clients.instagram.graph import TokenExpired
from carrier.store.schema import instagram_attempts, instagram_posts
from carrier.store.store import Store
from carrier.testing.graph_api import FakeGraphAPI

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def all_rows_as_text(store: Store) -> str:
    async with store.engine.connect() as conn:
        rows = [
            *(await conn.execute(select(instagram_posts))).all(),
            *(await conn.execute(select(instagram_attempts))).all(),
        ]
    assert rows
    return "\n".join(repr(tuple(row)) for row in rows)


async def test_no_secret_in_logs_errors_or_rows(
    make_client: ClientFactory,
    graph: FakeGraphAPI,
    ftp_server: FtpTestServer,
    store: Store,
    media_dir: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    errors: list[str] = []
    # Every failure path that reports something: dropped upload, lost answer, rate limit,
    # container error, expired token.
    ftp_server.drop_uploads = 1
    graph.lose_publish_response("500")
    await client.post(samples.jpeg(media_dir / "a.jpg", noise=True, seed=1), caption="one")
    graph.rate_limit(times=1, endpoint="media")
    errors.append(
        (await client.post(samples.jpeg(media_dir / "b.jpg", seed=2), caption="two")).message
    )
    graph.fail_next_container()
    errors.append(
        (await client.post(samples.jpeg(media_dir / "c.jpg", seed=3), caption="3")).message
    )
    graph.expire_token()
    with pytest.raises(TokenExpired) as caught:
        await client.post(samples.jpeg(media_dir / "d.jpg", seed=4), caption="four")
    errors.append(str(caught.value))
    clock.advance(hours=1)
    with pytest.raises(TokenExpired) as again:
        await client.run_queue()
    errors.append(str(again.value))

    assert "expired" in " ".join(errors)  # the failures did happen and were reported
    assert any("FTP upload" in r.getMessage() for r in caplog.records)
    text = caplog.text + "\n".join(errors) + await all_rows_as_text(store)
    for secret in (TOKEN, FTP_PASSWORD):
        assert secret not in text


async def test_a_refused_ftp_login_names_the_user_not_the_password(
    make_client: ClientFactory,
    environ: dict[str, str],
    graph: FakeGraphAPI,
    ftp_server: FtpTestServer,
    store: Store,
    media_dir: Path,
) -> None:
    environ["FTP_PASSWORD"] = "wrong-password-value"
    outcome = await make_client().post(samples.jpeg(media_dir / "a.jpg"), caption="x")
    assert outcome.post.status == "failed"  # a refused login is not retried blindly
    error = outcome.post.error or ""
    assert "refused" in error and "carrier@127.0.0.1" in error
    assert "wrong-password-value" not in error
    assert graph.requests_to("media") == []
    assert "wrong-password-value" not in await all_rows_as_text(store)


def post_values(**overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {
        "agent_id": "fish",
        "request_id": "r1",
        "status": "queued",
        "media_kind": "image",
        "local_path": "/tmp/a.jpg",
        "sha256": "0" * 64,
        "size_bytes": 10,
        "caption": "",
        "attempt_count": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(overrides)
    return values


@pytest.mark.postgres
@pytest.mark.parametrize(
    "overrides",
    [
        {"status": "posted"},
        {"media_kind": "gif"},
        {"status": "published"},  # published without published_at
        {"attempt_count": -1},
    ],
)
async def test_the_database_checks_post_rows(store: Store, overrides: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(instagram_posts.insert().values(**post_values(**overrides)))


@pytest.mark.postgres
async def test_one_request_id_is_one_post(store: Store) -> None:
    values = post_values()
    del values["status"], values["attempt_count"], values["created_at"], values["updated_at"]
    first, created = await store.instagram.create(**values, now=NOW)
    again, created_again = await store.instagram.create(**values, now=NOW)
    assert created and not created_again
    assert again.id == first.id
    assert len(await store.instagram.list_posts("fish")) == 1
    # Another agent may use the same request id.
    other, created_other = await store.instagram.create(
        **{**values, "agent_id": "salmon"},
        now=NOW,
    )
    assert created_other and other.id != first.id


@pytest.mark.postgres
async def test_a_claim_is_exclusive_until_its_lease_ends(store: Store) -> None:
    values = post_values()
    del values["status"], values["attempt_count"], values["created_at"], values["updated_at"]
    post, _ = await store.instagram.create(**values, now=NOW)
    from datetime import timedelta

    lease = NOW + timedelta(minutes=5)
    assert await store.instagram.claim(post.id, now=NOW, lease_until=lease)
    assert not await store.instagram.claim(post.id, now=NOW, lease_until=lease)
    assert await store.instagram.due("fish", NOW) == []
    later = lease + timedelta(seconds=1)
    assert [p.id for p in await store.instagram.due("fish", later)] == [post.id]
    assert await store.instagram.claim(post.id, now=later, lease_until=later + timedelta(minutes=5))
    stored = await store.instagram.get("fish", post.id)
    assert stored is not None and stored.attempt_count == 2
