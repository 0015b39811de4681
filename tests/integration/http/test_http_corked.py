"""Each response's head and body leave in one write (``carrier.clients.http.corked``), over
the real uvicorn server, and nothing held back is lost when the connection closes."""

from __future__ import annotations

import asyncio
import json

import pytest
from api_support import RunningApi

from carrier.clients.http.corked import CorkedTransport


async def raw_exchange(api: RunningApi, request: bytes) -> bytes:
    """Send ``request`` as is and read until the server closes the connection."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_chat_reply_goes_out_head_and_body_in_one_write(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[bytes]] = []
    flush = CorkedTransport.flush

    def recorded(self: CorkedTransport) -> None:
        sent.append(list(self._pending))
        flush(self)

    monkeypatch.setattr(CorkedTransport, "flush", recorded)
    body = json.dumps({"author_id": "ana", "text": "@fish hello there"}).encode()
    answer = await raw_exchange(
        api,
        b"POST /api/v1/agents/fish/channels/c1/messages HTTP/1.1\r\nHost: test\r\n"
        + f"Authorization: Bearer {api.chat_key}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["reply"]["text"]
    writes = [chunks for chunks in sent if chunks]
    assert len(writes) == 1  # one write for the whole response
    assert writes[0][0].startswith(b"HTTP/1.1 200") and b"".join(writes[0][1:]) == payload


async def test_keep_alive_requests_each_get_their_whole_answer(api: RunningApi) -> None:
    """Several requests on one connection, the last one closing it: every answer arrives
    whole and in order, the last one although the connection closes right after it."""
    requests = b"".join(
        f"GET /healthz?n={n} HTTP/1.1\r\nHost: test\r\n".encode()
        + (b"Connection: close\r\n" if n == 4 else b"")
        + b"\r\n"
        for n in range(5)
    )
    answer = await raw_exchange(api, requests)
    assert answer.count(b"HTTP/1.1 200 OK") == 5
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in answer.split(b"HTTP/1.1 ")[1:]]
    assert all(json.loads(body)["status"] == "ok" for body in bodies)
