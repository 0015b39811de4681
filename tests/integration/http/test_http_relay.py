"""WebSocket broadcasts between processes over a real Redis: what one process says reaches the
other's listeners, and a Redis outage never holds up the chat or this process's listeners."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api_support import RunningApi, make_settings, next_event, running_api
from websockets.asyncio.client import ClientConnection, connect

from carrier.clients.http.hub import encode
from carrier.clients.http.relay import RedisRelay

WS = "/api/v1/agents/fish/channels/general/ws"
CHAT = "/api/v1/agents/fish/channels/general/messages"


async def _open(api: RunningApi) -> ClientConnection:
    socket = await connect(api.ws_url + WS)
    await socket.send(json.dumps({"type": "auth", "key": api.chat_key}))
    assert json.loads(await socket.recv())["type"] == "ready"
    return socket


async def _eventually(check: Callable[[], bool], seconds: float = 15) -> None:
    """Wait until ``check()`` holds (the relay works in background tasks)."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_broadcasts_cross_processes_and_survive_a_redis_outage(
    tmp_path: Path, redis_server: Any
) -> None:
    heard: list[dict[str, Any]] = []
    other = RedisRelay(redis_server.url, "fish")  # stands for another process of the agent
    other.attach(lambda channel, frame: heard.append({"channel": channel, **json.loads(frame)}))
    async with (
        RedisRelay(redis_server.url, "fish") as relay,
        other,
        running_api(make_settings(tmp_path), relay=relay) as api,
    ):
        await _eventually(lambda: relay.subscribed.is_set() and other.subscribed.is_set())
        socket = await _open(api)
        async with api.client(api.chat_key) as client:
            # Said here: heard here at once, and by the other process.
            said = await client.post(CHAT, json={"author_id": "ana", "text": "@fish hi"})
            assert said.status_code == 200
            assert (await next_event(socket, "message"))["author_id"] == "ana"
            await _eventually(lambda: [e["type"] for e in heard] == ["message", "reply"])
            assert heard[0]["channel"] == "general" and heard[0]["author_id"] == "ana"
            # Said on the other process: heard by this one's listener.
            await next_event(socket, "reply")
            other.publish("general", encode({"type": "message", "author_id": "far"}))
            assert (await next_event(socket, "message"))["author_id"] == "far"

            redis_server.stop()
            try:
                # Redis is gone: the chat and this process's listeners carry on.
                during = await client.post(CHAT, json={"author_id": "bo", "text": "@fish hey"})
                assert during.status_code == 200 and during.json()["reply"] is not None
                assert (await next_event(socket, "message"))["author_id"] == "bo"
                assert (await next_event(socket, "reply"))["text"] == during.json()["reply"]["text"]
            finally:
                redis_server.resume()

            # Back: the subscription is made again and broadcasts flow both ways.
            await _eventually(lambda: relay.subscribed.is_set() and other.subscribed.is_set())
            heard.clear()
            after = await client.post(CHAT, json={"author_id": "cy", "text": "@fish back?"})
            assert after.status_code == 200
            await _eventually(lambda: any(e.get("author_id") == "cy" for e in heard))
            other.publish("general", encode({"type": "message", "author_id": "far-2"}))
            while (await next_event(socket, "message"))["author_id"] != "far-2":
                pass
        await socket.close()
