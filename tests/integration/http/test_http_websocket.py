"""WebSocket chat per channel over a real socket: auth, streaming replies, bad frames,
oversized frames and slow readers, and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
import socket as socket_module
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import RunningApi, make_settings, next_event, running_api
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
        outcome = await next_event(ana, "outcome")
        assert outcome["request_id"] == "r1"
        assert outcome["decision"]["reason"] == "mention" and outcome["context"]["persona"]
        said = await next_event(bo, "message")
        reply = await next_event(bo, "reply")
        assert said["author_id"] == "ana" and said["text"] == "@fish hi"
        assert reply["text"] == outcome["reply"]["text"] and reply["reason"] == "mention"
        # REST messages stream to the socket too.
        async with api.client(api.chat_key) as client:
            await client.post(
                "/api/v1/agents/fish/channels/general/messages",
                json={"author_id": "cy", "text": "@fish from REST"},
            )
        assert (await next_event(bo, "message"))["author_id"] == "cy"
        await elsewhere.send(json.dumps({"type": "ping", "request_id": 5}))
        assert await next_event(elsewhere, "pong") == {"type": "pong", "request_id": 5}
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


async def test_a_key_revoked_mid_session_stops_working(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api={"key_cache_seconds": 0.3})
    async with running_api(settings) as api:
        created = await api.store.api_keys.create("fish", "ws-key", ["chat"])
        socket = await _open(api, key=created.secret)
        await api.store.api_keys.revoke("fish", "ws-key")
        await asyncio.sleep(0.4)  # the key cache forgets it
        await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": "@fish hi"}))
        with pytest.raises(ConnectionClosed) as closed:
            await next_event(socket, "outcome")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_bad_frames_get_errors_and_the_socket_stays(api: RunningApi) -> None:
    socket = await _open(api)
    try:
        await socket.send("not json")
        assert (await next_event(socket, "error"))["error"]["status"] == 400
        await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": 3}))
        error = (await next_event(socket, "error"))["error"]
        assert error["status"] == 422 and error["details"][0]["loc"] == ["text"]
        await socket.send(json.dumps({"type": "dance"}))
        assert (await next_event(socket, "error"))["error"]["code"] == "bad_request"
        await socket.send(json.dumps({"type": "message", "author_id": "ana", "text": "@fish ok"}))
        assert (await next_event(socket, "outcome"))["reply"] is not None
    finally:
        await socket.close()


async def test_an_oversized_frame_closes_only_that_socket(api: RunningApi) -> None:
    big = await _open(api)
    other = await _open(api)
    try:
        limit = api.settings.api.max_ws_message_bytes
        await big.send(json.dumps({"type": "message", "author_id": "a", "text": "x" * limit}))
        with pytest.raises(ConnectionClosed) as closed:
            await next_event(big, "outcome")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await other.send(json.dumps({"type": "message", "author_id": "b", "text": "@fish hi"}))
        assert (await next_event(other, "outcome"))["reply"] is not None
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
                assert (await next_event(reader, "message"))["author_id"] == f"u{i % 7}"
                assert (await next_event(reader, "reply"))["reason"] == "mention"
    finally:
        await reader.close()
        lazy.transport.abort()


async def _refused(url: str, auth: dict[str, Any] | None) -> tuple[int, str]:
    """Connect, send ``auth`` (or nothing), and return the server's close code and reason."""
    async with connect(url) as socket:
        if auth is not None:
            await socket.send(json.dumps(auth))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await socket.recv()
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_an_admin_only_key_and_an_expired_key_are_refused(api: RunningApi) -> None:
    url = api.ws_url + WS.format(channel="general")
    admin_only = await api.store.api_keys.create("fish", "admin-only", ["admin"])
    code, reason = await _refused(url, {"type": "auth", "key": admin_only.secret})
    assert code == 4403 and "chat" in reason

    past = datetime.now(UTC) - timedelta(days=2)
    old = await api.store.api_keys.create(
        "fish", "expired", ["chat"], now=past, expires_at=past + timedelta(days=1)
    )
    code, reason = await _refused(url, {"type": "auth", "key": old.secret})
    assert code == 4401 and "expired" in reason
    # Neither was let in: no one joined the channel.
    assert api.app.state.carrier.hub.listeners("general") == 0


async def test_no_auth_frame_in_time_closes_with_4408(tmp_path: Path) -> None:
    async with running_api(make_settings(tmp_path), ws_auth_timeout_seconds=0.2) as api:
        code, reason = await _refused(api.ws_url + WS.format(channel="general"), None)
        assert code == 4408 and "auth" in reason
        # A client that does authenticate in time is served as usual.
        socket = await _open(api)
        await socket.close()


async def test_a_reader_that_falls_behind_is_closed_with_1013(tmp_path: Path) -> None:
    # Small socket buffers on both ends, so the server's writes to a reader that reads nothing
    # stall after kilobytes; then its outbox (4 events) overflows.
    settings = make_settings(tmp_path)
    async with running_api(settings, ws_outbox_size=4, send_buffer_bytes=4096) as api:
        url = api.ws_url + WS.format(channel="busy")
        host, port = api.url.removeprefix("http://").split(":")
        raw = socket_module.socket()
        raw.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
        raw.connect((host, int(port)))
        raw.setblocking(False)
        lazy = await connect(url, sock=raw, additional_headers=api.headers(api.chat_key))
        assert json.loads(await lazy.recv())["type"] == "ready"
        lazy.transport.pause_reading()
        reader = await _open(api, "busy")
        hub = api.app.state.carrier.hub
        try:
            async with api.client(api.chat_key) as client:
                for i in range(200):
                    response = await client.post(
                        "/api/v1/agents/fish/channels/busy/messages",
                        json={"author_id": f"u{i % 7}", "text": "@fish " + "padding " * 1000},
                    )
                    assert response.status_code == 200
                    # The reader that keeps up gets everything.
                    assert (await next_event(reader, "message"))["author_id"] == f"u{i % 7}"
                    if hub.listeners("busy") == 1:
                        break
            assert hub.listeners("busy") == 1, "the lazy reader was never dropped"
            lazy.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await lazy.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            # Everyone else is still served.
            await reader.send(json.dumps({"type": "ping", "request_id": "p"}))
            assert (await next_event(reader, "pong"))["request_id"] == "p"
        finally:
            await reader.close()
            lazy.transport.abort()


async def test_an_unexpected_error_is_logged_told_and_closes_with_1011(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_message: object, **_options: object) -> object:
        raise RuntimeError("internal detail: /srv/secret/path")

    bystander = await _open(api, "other")
    socket = await _open(api)
    monkeypatch.setattr(api.engine, "handle", broken)
    await socket.send(
        json.dumps({"type": "message", "request_id": "r9", "author_id": "ana", "text": "hi"})
    )
    frame = await next_event(socket, "error")
    assert frame["request_id"] == "r9"
    assert frame["error"] == {
        "status": 500,
        "code": "internal_error",
        "message": frame["error"]["message"],
        "details": [],
    }
    assert "secret" not in json.dumps(frame)
    with pytest.raises(ConnectionClosed) as closed:
        await next_event(socket, "outcome")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    # Logged with its traceback, not swallowed.
    [record] = [r for r in caplog.records if r.name == "carrier.http.ws" and r.exc_info]
    assert "internal detail" in str(record.exc_info[1].__cause__ if record.exc_info else "")
    # The server goes on: another socket still talks (once the engine works again).
    monkeypatch.undo()
    await bystander.send(json.dumps({"type": "message", "author_id": "bo", "text": "@fish hi"}))
    assert (await next_event(bystander, "outcome"))["reply"] is not None
    await bystander.close()
