"""When things break: the database gone or locked gives 503, a bug gives 500, both in the one
error shape, without internals, and the server keeps serving."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from api_support import RunningApi, assert_error, make_settings, running_api

CHAT = "/api/v1/agents/fish/channels/general/messages"


async def test_readyz_and_routes_give_503_when_the_database_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    settings = make_settings(tmp_path, database={"url": f"sqlite+aiosqlite:///{folder / 'a.db'}"})
    async with running_api(settings) as api:
        async with httpx.AsyncClient(base_url=api.url) as anonymous:
            assert (await anonymous.get("/readyz")).json() == {
                "status": "ready",
                "database": "ok",
            }
            # The database goes away: its folder is removed and no pooled connection is left.
            shutil.rmtree(folder)
            await api.store.engine.dispose()
            ready = await anonymous.get("/readyz")
            error = assert_error(ready, 503, "unavailable")
            assert "database" in error["message"]
            assert (await anonymous.get("/healthz")).status_code == 200  # the process is up
        async with api.client(api.chat_key) as client:
            chat = await client.post(CHAT, json={"author_id": "ana", "text": "@fish hi"})
        error = assert_error(chat, 503, "unavailable")
        assert str(folder) not in error["message"] and "sqlite" not in error["message"].lower()
        # The operator's log says what is wrong.
        assert any(
            r.name == "carrier.http" and "cannot be opened" in r.getMessage()
            for r in caplog.records
        )
        folder.mkdir()  # let the fixture close cleanly


async def test_a_locked_database_gives_503_and_loses_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database={"busy_timeout_ms": 100})
    async with running_api(settings) as api, api.client(api.chat_key) as client:
        first = await client.post(CHAT, json={"author_id": "ana", "text": "@fish first"})
        assert first.status_code == 200
        path = settings.database.url.removeprefix("sqlite+aiosqlite:///")
        # Another process holds the write lock (from a thread: the server shares this loop,
        # and may be finishing a write of its own that the lock has to wait for).
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(other.execute, "BEGIN EXCLUSIVE")
            locked = await client.post(CHAT, json={"author_id": "ana", "text": "@fish second"})
            error = assert_error(locked, 503, "unavailable")
            assert "try again" in error["message"]
        finally:
            await asyncio.to_thread(other.execute, "ROLLBACK")
            other.close()
        again = await client.post(CHAT, json={"author_id": "ana", "text": "@fish third"})
        assert again.status_code == 200 and again.json()["reply"] is not None
        logged = await client.get(CHAT, params={"limit": 10})
        texts = [m["text"] for m in logged.json()]
        assert "@fish first" in texts and "@fish third" in texts  # nothing stored was lost


async def test_an_unexpected_error_is_a_500_in_the_error_shape_without_internals(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_agent_id: str) -> dict[str, str]:
        raise RuntimeError("internal detail: /srv/secret/path")

    monkeypatch.setattr(api.store.state, "all", broken)
    caplog.set_level(logging.ERROR)
    async with api.client() as client:
        response = await client.get("/api/v1/agents/fish/state")
        error = assert_error(response, 500, "internal_error")
        assert "secret" not in response.text and "RuntimeError" not in response.text
        assert error["details"] == []
        # Logged with the traceback for the operator.
        assert any(
            r.name == "carrier.http" and r.exc_info and "internal detail" in str(r.exc_info[1])
            for r in caplog.records
        )
        # Everyone else is still served.
        assert (await client.get("/api/v1/agents/fish/persona")).status_code == 200
