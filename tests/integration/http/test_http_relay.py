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
    other.listen("general")  # it has a listener there
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


async def test_a_process_hears_only_the_channels_it_has_listeners_in(
    tmp_path: Path, redis_server: Any
) -> None:
    """Per-channel topics: broadcasts of a channel nobody listens to through a process never
    reach it; its first listener subscribes the channel, its last one leaving unsubscribes
    it, and a subscription made again after an outage has the channels wanted then."""
    heard: list[tuple[str, str]] = []
    other = RedisRelay(redis_server.url, "fish")
    other.attach(lambda channel, frame: heard.append((channel, json.loads(frame)["author_id"])))
    async with (
        RedisRelay(redis_server.url, "fish") as relay,
        other,
        running_api(make_settings(tmp_path), relay=relay) as api,
    ):
        await _eventually(lambda: relay.subscribed.is_set() and other.subscribed.is_set())
        socket = await _open(api)  # a listener of "general" on the API's process
        async with api.client(api.chat_key) as client:
            # Said on the API's process in a channel the other process does not listen to.
            quiet = "/api/v1/agents/fish/channels/quiet/messages"
            assert (await client.post(quiet, json={"author_id": "ana", "text": "hm"})).is_success
            # Said by the other process: "general" reaches the API's listener, "quiet" nobody.
            other.publish("quiet", encode({"type": "message", "author_id": "nobody-hears"}))
            other.publish("general", encode({"type": "message", "author_id": "far"}))
            assert (await next_event(socket, "message"))["author_id"] == "far"
            other.listen("quiet")
            await _eventually(lambda: redis_server.numsub(other.channel_topic("quiet")) == 1)
            assert (await client.post(quiet, json={"author_id": "bo", "text": "hm"})).is_success
            await _eventually(lambda: ("quiet", "bo") in heard)
            assert ("quiet", "ana") not in heard  # said before it listened: never sent to it
            other.unlisten("quiet")
            await _eventually(lambda: redis_server.numsub(other.channel_topic("quiet")) == 0)

            await socket.close()  # the last listener of "general" here leaves
            await _eventually(lambda: redis_server.numsub(relay.channel_topic("general")) == 0)
            socket = await _open(api)
            await _eventually(lambda: redis_server.numsub(relay.channel_topic("general")) == 1)

            redis_server.stop()
            redis_server.resume()
            # Subscribed again, with the channel that has a listener now.
            await _eventually(lambda: redis_server.numsub(relay.channel_topic("general")) == 1)
            await _eventually(lambda: relay.subscribed.is_set())
            other.publish("general", encode({"type": "message", "author_id": "after"}))
            while (await next_event(socket, "message"))["author_id"] != "after":
                pass
        await socket.close()
