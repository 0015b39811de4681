"""The API key repository on both databases: only hashes stored, expiry, revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from carrier.store import apikeys
from carrier.store.apikeys import hash_key
from carrier.store.schema import api_keys
from carrier.store.store import Store

pytestmark = pytest.mark.postgres


async def test_a_key_verifies_until_revoked_or_expired(store: Store) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    created = await store.api_keys.create(
        "fish", "ops", ["admin", "chat", "chat"], expires_at=now + timedelta(days=1), now=now
    )
    assert created.key.scopes == ("chat", "admin")
    assert created.secret.startswith(created.key.prefix) and len(created.secret) > 40

    ok = await store.api_keys.verify("fish", created.secret, now=now)
    assert ok.problem is None and ok.key is not None and ok.key.name == "ops"
    assert (
        await store.api_keys.verify("other-agent", created.secret, now=now)
    ).problem == "unknown"
    assert (await store.api_keys.verify("fish", created.secret + "x", now=now)).problem == "unknown"
    assert (await store.api_keys.verify("fish", "", now=now)).problem == "unknown"
    later = now + timedelta(days=2)
    assert (await store.api_keys.verify("fish", created.secret, now=later)).problem == "expired"

    assert await store.api_keys.revoke("fish", str(created.key.id), now=now) == 1
    assert (await store.api_keys.verify("fish", created.secret, now=now)).problem == "revoked"
    assert await store.api_keys.revoke("fish", "ops", now=now) == 0
    [listed] = await store.api_keys.list("fish")
    assert listed.status(now) == "revoked" and listed.last_used_at == now


async def test_only_the_hash_is_stored(store: Store) -> None:
    created = await store.api_keys.create("fish", "ops", ["chat"])
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(api_keys))).one()
    assert row.key_hash == hash_key(created.secret) and len(row.key_hash) == 64
    assert created.secret not in " ".join(str(v) for v in row)


async def test_bad_keys_are_refused_with_a_reason(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        await store.api_keys.create("fish", "x", ["root"])
    with pytest.raises(ValueError, match="at least one scope"):
        await store.api_keys.create("fish", "x", [])
    with pytest.raises(ValueError, match="name"):
        await store.api_keys.create("fish", "  ", ["chat"])
    with pytest.raises(ValueError, match="future"):
        await store.api_keys.create(
            "fish", "x", ["chat"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    await store.api_keys.create("fish", "x", ["chat"])
    with pytest.raises(ValueError, match="exists"):
        await store.api_keys.create("fish", "x", ["chat"])
    await store.api_keys.revoke("fish", "x")
    await store.api_keys.create("fish", "x", ["chat"])  # the name is free again
    assert [k.status(datetime.now(UTC)) for k in await store.api_keys.list("fish")] == [
        "revoked",
        "active",
    ]


async def test_the_deciding_comparison_is_constant_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await store.api_keys.create("fish", "spied", ["chat"])
    calls: list[tuple[object, object]] = []
    verdicts = iter([True, False])

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return next(verdicts)  # what hmac.compare_digest says decides the outcome

    monkeypatch.setattr(apikeys.hmac, "compare_digest", spy)
    accepted = await store.api_keys.verify("fish", created.secret)
    refused = await store.api_keys.verify("fish", created.secret)
    assert accepted.problem is None and refused.problem == "unknown"
    digest = hash_key(created.secret)
    assert calls == [(digest, digest), (digest, digest)]
