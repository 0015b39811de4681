"""Keys, scopes and the one error shape, over real HTTP; bad input never stops the server."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from api_support import RunningApi, assert_error, make_settings, running_api

from carrier.clients.http.auth import authenticate
from carrier.clients.http.errors import ApiError
from carrier.testing.statements import statements_on

CHAT = "/api/v1/agents/fish/channels/general/messages"
PERSONA = "/api/v1/agents/fish/persona"


async def test_no_key_is_401_and_a_wrong_scope_is_403(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        missing = await anonymous.get(PERSONA)
        garbage = await anonymous.get(PERSONA, headers={"Authorization": "Bearer nope"})
        basic = await anonymous.get(PERSONA, headers={"Authorization": "Basic YTpi"})
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(garbage, 401)
    assert_error(basic, 401)
    async with api.client(api.chat_key) as chat_only:
        forbidden = await chat_only.get(PERSONA)
    assert "admin" in assert_error(forbidden, 403, "forbidden")["message"]
    async with api.client(api.admin_key) as admin:
        assert (await admin.get(PERSONA)).status_code == 200


async def test_revoked_and_expired_keys_are_refused_at_once_without_a_key_cache(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, api={"key_cache_seconds": 0})
    async with running_api(settings) as api:
        created = await api.store.api_keys.create("fish", "short-lived", ["chat"])
        async with api.client(created.secret) as client:
            assert (await client.get("/api/v1/agents/fish")).status_code == 200
            assert await api.store.api_keys.revoke("fish", "short-lived") == 1
            revoked = await client.get("/api/v1/agents/fish")
        assert "revoked" in assert_error(revoked, 401)["message"]

        past = datetime.now(UTC) - timedelta(days=2)
        old = await api.store.api_keys.create(
            "fish", "expired", ["chat"], now=past, expires_at=past + timedelta(days=1)
        )
        async with api.client(old.secret) as client:
            expired = await client.get("/api/v1/agents/fish")
        assert "expired" in assert_error(expired, 401)["message"]


async def test_a_checked_key_is_trusted_for_key_cache_seconds_then_read_again(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, api={"key_cache_seconds": 1.5})
    async with running_api(settings) as api:
        created = await api.store.api_keys.create("fish", "cached", ["chat"])
        with statements_on(api.store, "api_keys") as lookups:
            async with api.client(created.secret) as client:
                began = time.monotonic()
                for _ in range(20):
                    assert (await client.get("/api/v1/agents/fish")).status_code == 200
                if time.monotonic() - began < 1.5:  # else a slow machine outlasted the cache
                    assert len(lookups) == 1  # one read for twenty requests
                assert await api.store.api_keys.revoke("fish", "cached") == 1
                lookups.clear()
                await asyncio.sleep(1.6)
                revoked = await client.get("/api/v1/agents/fish")
            assert "revoked" in assert_error(revoked, 401)["message"]
            assert len(lookups) == 1


async def test_a_cached_key_is_refused_the_moment_it_expires(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api={"key_cache_seconds": 300})
    async with running_api(settings) as api:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        created = await api.store.api_keys.create("fish", "brief", ["chat"], expires_at=soon)
        async with api.client(created.secret) as client:
            assert (await client.get("/api/v1/agents/fish")).status_code == 200
            await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.05)
            expired = await client.get("/api/v1/agents/fish")
        assert "expired" in assert_error(expired, 401)["message"]


async def test_a_wrong_key_is_never_trusted_from_the_cache(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        assert (await client.get("/api/v1/agents/fish")).status_code == 200
    # The same length and prefix as a cached key, one character off.
    near = api.chat_key[:-1] + ("A" if api.chat_key[-1] != "A" else "B")
    async with api.client(near) as client:
        assert_error(await client.get("/api/v1/agents/fish"), 401)


async def test_keys_are_stored_only_as_hashes(api: RunningApi) -> None:
    from sqlalchemy import text

    async with api.store.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    dumped = json.dumps([list(map(str, row)) for row in rows])
    assert rows and api.admin_key not in dumped and api.chat_key not in dumped
    assert api.admin_key[len("carrier_") :] not in dumped


async def test_malformed_json_wrong_types_and_unknown_fields(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        broken = await client.post(
            CHAT,
            content=b'{"author_id": "ana", "text": ',
            headers={"content-type": "application/json"},
        )
        wrong_type = await client.post(CHAT, json={"author_id": "ana", "text": 42})
        unknown = await client.post(CHAT, json={"author_id": "ana", "text": "hi", "admin": True})
        not_object = await client.post(CHAT, json=["hi"])
        bad_channel = await client.post(
            "/api/v1/agents/fish/channels/a%20b/messages", json={"author_id": "a", "text": "x"}
        )
    assert_error(broken, 400, "malformed_json")
    error = assert_error(wrong_type, 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "text"]
    assert_error(unknown, 422)
    assert_error(not_object, 422)
    assert_error(bad_channel, 422)


async def test_unknown_routes_methods_and_ids(api: RunningApi) -> None:
    async with api.client() as client:
        assert_error(await client.get("/api/v1/nothing-here"), 404, "not_found")
        assert_error(await client.delete("/api/v1/agents/fish"), 405, "method_not_allowed")
        assert_error(await client.get("/api/v1/agents/fish/users/nobody"), 404)
        assert_error(await client.get("/api/v1/agents/shark/persona"), 404)
        assert_error(await client.delete(f"{PERSONA}/items/999999"), 404)
        assert_error(await client.get(f"{PERSONA}/items/x"), 405)


async def test_a_10_mb_body_is_refused_and_everyone_else_is_served(api: RunningApi) -> None:
    huge = b'{"author_id": "ana", "text": "' + b"a" * 10_000_000 + b'"}'

    async def chunks() -> object:
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]

    async with api.client(api.chat_key) as client:
        declared = await client.post(
            CHAT, content=huge, headers={"content-type": "application/json"}
        )
        assert_error(declared, 413, "payload_too_large")
        try:
            streamed = await client.post(
                CHAT, content=chunks(), headers={"content-type": "application/json"}
            )
        except httpx.RemoteProtocolError:
            streamed = None  # the server may close while the client is still sending
        if streamed is not None:
            assert_error(streamed, 413)
    async with api.client(api.chat_key) as other:
        ok = await other.post(CHAT, json={"author_id": "bo", "text": "@fish still there?"})
    assert ok.status_code == 200 and ok.json()["reply"] is not None


async def test_a_slow_client_does_not_hold_up_the_others(api: RunningApi) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"author_id": "slow", "text": "@fish hello"}'
    writer.write(
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + api.chat_key.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
    )
    await writer.drain()
    try:
        async with api.client(api.chat_key) as client:
            replies = await asyncio.gather(
                *(
                    client.post(CHAT, json={"author_id": f"u{i}", "text": "@fish hi"})
                    for i in range(5)
                )
            )
        assert all(r.status_code == 200 for r in replies)
        writer.write(body[10:])
        await writer.drain()
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_cors_is_closed_unless_configured(api: RunningApi) -> None:
    async with api.client() as client:
        response = await client.options(
            CHAT,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        plain = await client.get("/api/v1/agents/fish", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in plain.headers


async def test_cors_opens_only_to_configured_origins(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api={"cors_origins": ["https://console.example"]})
    async with running_api(settings) as api, api.client() as client:
        allowed = await client.options(
            CHAT,
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        other = await client.options(
            CHAT,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://console.example"
    assert "access-control-allow-origin" not in other.headers


async def test_a_burst_on_one_key_shares_its_checks_and_revocation_is_still_immediate(
    tmp_path: Path,
) -> None:
    # Without the key cache every check reads the database; a burst still shares one read.
    async with running_api(make_settings(tmp_path, api={"key_cache_seconds": 0})) as api:
        ctx = api.app.state.carrier
        created = await api.store.api_keys.create("fish", "burst", ["chat"])
        with statements_on(api.store, "api_keys") as lookups:
            keys = await asyncio.gather(
                *(authenticate(ctx, created.secret, "chat") for _ in range(40))
            )
            assert {k.name for k in keys} == {"burst"}
            assert 1 <= len(lookups) <= 2  # one read, and at most one more for latecomers
            await api.store.api_keys.revoke("fish", "burst")
            with pytest.raises(ApiError) as refused:
                await authenticate(ctx, created.secret, "chat")
            assert refused.value.status == 401 and "revoked" in refused.value.message
