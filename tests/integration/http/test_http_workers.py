"""`carrier serve --workers N`: refused where it would be wrong (no Redis), and with Redis
several processes share one port, and a channel's WebSocket listeners hear what is said on
any worker, once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect

from carrier.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
WS = "/api/v1/agents/fish/channels/{channel}/ws"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'workers.db'}\n"
        f"agent:\n  id: fish\n  character_file: {ROOT / 'characters/fish.yaml'}\n"
        "rate_limits:\n  per_user: 100000/minute\n  global: 1000000/minute\n",
        encoding="utf-8",
    )
    return path


def _without_redis() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CARRIER_REDIS_URL")}


def test_more_than_one_worker_without_redis_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("CARRIER_REDIS_URL", raising=False)
    refused = CliRunner().invoke(app, ["serve", "--workers", "2", "-c", str(config)])
    assert refused.exit_code == 2, refused.output
    assert "REDIS_URL" in refused.output and "rate limits" in refused.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def workers(config: Path, tmp_path: Path, redis_server: Any) -> Iterator[tuple[str, str]]:
    """Two workers on one port, with Redis; yields the URL and a chat key."""
    made = CliRunner().invoke(app, ["apikey", "create", "ws", "-c", str(config)])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    port = _free_port()
    command = [sys.executable, "-m", "carrier.cli.main", "serve", "-c", str(config)]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-memory", "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**_without_redis(), "REDIS_URL": redis_server.url, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    ready = 0
    while ready < 10:  # several answers in a row: both workers are likely up
        try:
            ready += httpx.get(url + "/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            ready = 0
            time.sleep(0.1)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"carrier serve --workers 2 did not start:\n{_output(process)}")
    yield url, key
    process.send_signal(signal.SIGTERM)
    output = _output(process)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


def _output(process: subprocess.Popen[bytes]) -> str:
    out, _ = process.communicate(timeout=60)
    return out.decode(errors="replace")


def _worker_socket_counts(url: str) -> set[float]:
    """The open-WebSocket gauge of each worker seen over fresh connections (each worker has
    its own /metrics)."""
    seen: set[float] = set()
    for _ in range(40):
        with httpx.Client() as fresh:  # a new connection: the kernel picks a worker
            text = fresh.get(url + "/metrics").text
        found = re.search(r"^carrier_websocket_connections (\S+)$", text, re.MULTILINE)
        assert found is not None
        seen.add(float(found.group(1)))
    return seen


async def _open(url: str, key: str) -> ClientConnection:
    socket_ = await connect(url.replace("http://", "ws://") + WS.format(channel="general"))
    await socket_.send(json.dumps({"type": "auth", "key": key}))
    assert json.loads(await socket_.recv())["type"] == "ready"
    return socket_


async def _events(socket_: ClientConnection, wanted: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while len(events) < wanted:
            events.append(json.loads(await socket_.recv()))
    return events


async def _nothing_more(socket_: ClientConnection) -> list[dict[str, Any]]:
    extra: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(0.5):
            while True:
                extra.append(json.loads(await socket_.recv()))
    except TimeoutError:
        return extra


async def test_workers_share_one_port_and_every_listener_hears_every_worker_once(
    workers: tuple[str, str],
) -> None:
    url, key = workers
    sockets = [await _open(url, key) for _ in range(15)]  # odd: the two counts differ
    try:
        # Both workers hold some of the sockets (15 connections on one worker: odds 1 in 16k).
        counts = await asyncio.to_thread(_worker_socket_counts, url)
        assert len(counts) == 2 and sum(counts) == 15 and 0 not in counts, counts
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            for n in range(2):  # REST requests land on either worker
                said = await client.post(
                    "/api/v1/agents/fish/channels/general/messages",
                    json={"author_id": f"ana-{n}", "text": f"@fish hello {n}"},
                )
                assert said.status_code == 200, said.text
                reply = said.json()["reply"]
                assert reply is not None
                for socket_ in sockets:
                    message, answer = await _events(socket_, 2)
                    assert (message["type"], message["author_id"]) == ("message", f"ana-{n}")
                    assert (answer["type"], answer["text"]) == ("reply", reply["text"])
        # A message said over a socket reaches the sockets on the other worker too.
        await sockets[0].send(
            json.dumps({"type": "message", "request_id": "w", "author_id": "bo", "text": "hi"})
        )
        first = await _events(sockets[0], 2)
        assert {e["type"] for e in first} == {"message", "outcome"}
        for socket_ in sockets[1:]:
            (message,) = await _events(socket_, 1)
            assert (message["type"], message["author_id"]) == ("message", "bo")
        # Nothing twice: a worker does not deliver its own broadcasts again from Redis.
        for socket_ in sockets:
            assert await _nothing_more(socket_) == []
    finally:
        for socket_ in sockets:
            await socket_.close()
