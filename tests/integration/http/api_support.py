"""Helpers of the HTTP tests: a real API server on a free loopback port (uvicorn, in the
test's event loop), over a real SQLite database, with memory on the hashing embedder and
replies from the Markov fallback unless a test hands in an LLM."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.clients.http.app import create_app
from carrier.clients.http.hub import Relay
from carrier.clients.http.server import HTTP_BOT_ID, uvicorn_config
from carrier.engine.pipeline import Engine, EngineObserver
from carrier.generation.responder import Generator
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import Settings, load_settings
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class RunningApi:
    url: str
    settings: Settings
    store: Store
    engine: Engine
    memory: Memory
    admin_key: str
    chat_key: str
    app: FastAPI
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers(key), **options)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"},
        "agent": {"id": "fish", "character_file": str(ROOT / "characters/fish.yaml")},
        "rate_limits": {"per_user": "100000/minute", "global": "1000000/minute"},
        "vectors": {"chroma_path": str(tmp_path / "chroma")},
        "api": {"max_body_bytes": 65_536, "max_ws_message_bytes": 8192},
    }
    for section, value in overrides.items():
        values[section] = {**values.get(section, {}), **value}
    return load_settings(None, **values)


@asynccontextmanager
async def running_api(
    settings: Settings,
    *,
    llm: Generator | None = None,
    observers: list[EngineObserver] | None = None,
    ws_outbox_size: int = 256,
    ws_auth_timeout_seconds: float = 10.0,
    send_buffer_bytes: int | None = None,
    relay: Relay | None = None,
) -> AsyncIterator[RunningApi]:
    """``send_buffer_bytes`` sets SO_SNDBUF on the listening socket (accepted connections
    inherit it), so a reader that stops reading holds up the server's writes after kilobytes
    instead of the megabytes loopback would buffer."""
    store = await prepare_store(settings)
    memory = Memory(
        store,
        HashingEmbedder(),
        create_vector_index(settings, store),
        agent_id=settings.agent.id,
        extractor=OfflineExtractor(),
    )
    engine = build_engine_for(
        settings,
        store,
        HTTP_BOT_ID,
        rng=random.Random(7),
        llm=llm,
        memory=memory,
        observers=observers or [],
    )
    admin = await store.api_keys.create(settings.agent.id, "test-admin", ["chat", "admin"])
    chat = await store.api_keys.create(settings.agent.id, "test-chat", ["chat"])
    app = create_app(
        settings,
        store,
        engine,
        memory,
        ws_outbox_size=ws_outbox_size,
        ws_auth_timeout_seconds=ws_auth_timeout_seconds,
        relay=relay,
    )
    sock = socket.socket()
    if send_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield RunningApi(
            url=f"http://127.0.0.1:{port}",
            settings=settings,
            store=store,
            engine=engine,
            memory=memory,
            admin_key=admin.secret,
            chat_key=chat.secret,
            app=app,
        )
    finally:
        server.should_exit = True
        await task
        sock.close()
        await engine.aclose()
        await memory.aclose()
        await store.close()


Check = Callable[[httpx.Response], None]


async def next_event(socket: Any, kind: str, within: float = 10) -> dict[str, Any]:
    """The next event of ``kind`` on a chat WebSocket (others are skipped)."""
    async with asyncio.timeout(within):
        while True:
            event: dict[str, Any] = json.loads(await socket.recv())
            if event["type"] == kind:
                return event


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "code", "message", "details"}
    assert error["status"] == status and error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


class ThreadedApi:
    """:func:`running_api` on an event loop of its own, in a background thread: for
    synchronous clients (schemathesis, Playwright's sync API) that would block the test's
    loop.  Use as a context manager; ``api`` is the running server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api: RunningApi | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    def __enter__(self) -> RunningApi:
        self._thread.start()
        if not self._ready.wait(60) or self.api is None:
            raise RuntimeError(f"the API server did not start: {self._failed!r}")
        return self.api

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with running_api(self.settings) as api:
                self.api = api
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __enter__
            self._failed = exc
            self._ready.set()
