"""WebSocket chat per channel over a real socket: auth, streaming replies, bad frames,
oversized frames and slow readers, and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from api_support import RunningApi
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WS = "/api/v1/agents/fish/channels/{channel}/ws"


async def _open(
    api: RunningApi, channel: str = "general", key: str | None = None
) -> ClientConnection:
    socket = await connect(api.ws_url + WS.format(channel=channel))
    await socket.send(json.dumps({"type": "auth", "key": key or api.chat_key}))
    ready = json.loads(await socket.recv())
    assert ready == {"type": "ready", "agent_id": "fish", "channel_id": channel}
    return socket


async def _until(socket: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            event: dict[str, Any] = json.loads(await socket.recv())
            if event["type"] == kind:
                return event


async def test_replies_stream_to_everyone_in_the_channel(api: RunningApi) -> None:
    ana = await _open(api)
    bo = await _open(api)
    elsewhere = await _open(api, "other")
    try:
        await ana.send(
            json.dumps(
                {"type": "message", "request_id": "r1", "author_id": "ana", "text": "@fish hi"}
            )
        )
        outcome = await _until(ana, "outcome")
        assert outcome["request_id"] == "r1"
        assert outcome["decision"]["reason"] == "mention" and outcome["context"]["persona"]
        said = await _until(bo, "message")
        reply = await _until(bo, "reply")
        assert said["author_id"] == "ana" and said["text"] == "@fish hi"
        assert reply["text"] == outcome["reply"]["text"] and reply["reason"] == "mention"
        # REST messages stream to the socket too.
        async with api.client(api.chat_key) as client:
            await client.post(
                "/api/v1/agents/fish/channels/general/messages",
                json={"author_id": "cy", "text": "@fish from REST"},
            )
        assert (await _until(bo, "message"))["author_id"] == "cy"
        await elsewhere.send(json.dumps({"type": "ping", "request_id": 5}))
        assert await _until(elsewhere, "pong") == {"type": "pong", "request_id": 5}
    finally:
        for socket in (ana, bo, elsewhere):
            await socket.close()


async def test_header_auth_and_refusals(api: RunningApi) -> None:
    url = api.ws_url + WS.format(channel="general")
    async with connect(url, additional_headers=api.headers(api.chat_key)) as socket:
        assert json.loads(await socket.recv())["type"] == "ready"
    for key, code in (
        (
            "carrier_wrong",
            4401,
        ),
        (None, 4401),
    ):
        async with connect(url) as socket:
            await socket.send(json.dumps({"type": "auth", "key": key}))
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    async with connect(
        api.ws_url + WS.format(channel="general").replace("fish", "shark")
    ) as socket:
        await socket.send(json.dumps({"type": "auth", "key": api.chat_key}))
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_a_key_revoked_mid_session_stops_working(api: RunningApi) -> None:
    created = await api.store.api_keys.create("fish", "ws-key", ["chat"])
    socket = await _open(api, key=created.secret)
    await api.store.api_keys.revoke("fish", "ws-key")
    await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": "@fish hi"}))
    with pytest.raises(ConnectionClosed) as closed:
        await _until(socket, "outcome")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_bad_frames_get_errors_and_the_socket_stays(api: RunningApi) -> None:
    socket = await _open(api)
    try:
        await socket.send("not json")
        assert (await _until(socket, "error"))["error"]["status"] == 400
        await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": 3}))
        error = (await _until(socket, "error"))["error"]
        assert error["status"] == 422 and error["details"][0]["loc"] == ["text"]
        await socket.send(json.dumps({"type": "dance"}))
        assert (await _until(socket, "error"))["error"]["code"] == "bad_request"
        await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": "@fish ok"}))
        assert (await _until(socket, "outcome"))["reply"] is not None
    finally:
        await socket.close()


async def test_an_oversized_frame_closes_only_that_socket(api: RunningApi) -> None:
    big = await _open(api)
    other = await _open(api)
    try:
        limit = api.settings.api.max_ws_message_bytes
        await big.send(json.dumps({"type": "message", "author_id": "a", "text": "x" * limit}))
        with pytest.raises(ConnectionClosed) as closed:
            await _until(big, "outcome")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await other.send(json.dumps({"type": "message", "author_id": "b", "text": "@fish hi"}))
        assert (await _until(other, "outcome"))["reply"] is not None
    finally:
        await other.close()


async def test_a_reader_that_never_reads_holds_up_no_one(api: RunningApi) -> None:
    # (Dropping a reader whose outbox overflows is tested in tests/unit/http/test_hub.py:
    # over loopback the kernel buffers megabytes before the server would notice.)
    lazy = await connect(
        api.ws_url + WS.format(channel="busy"), additional_headers=api.headers(api.chat_key)
    )
    lazy.transport.pause_reading()  # reads nothing from the network from now on
    reader = await _open(api, "busy")
    try:
        async with api.client(api.chat_key) as client:
            for i in range(20):
                await client.post(
                    "/api/v1/agents/fish/channels/busy/messages",
                    json={"author_id": f"u{i % 7}", "text": "@fish " + "padding " * 450},
                )
                assert (await _until(reader, "message"))["author_id"] == f"u{i % 7}"
                assert (await _until(reader, "reply"))["reason"] == "mention"
    finally:
        await reader.close()
        lazy.transport.abort()
