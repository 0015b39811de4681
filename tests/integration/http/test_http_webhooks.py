"""Outbound webhooks against a real receiver on loopback: signed, retried with backoff,
never holding up a reply, bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from api_support import make_settings, running_api

from carrier.bootstrap import build_observers
from carrier.settings import ConfigError
from carrier.testing.loopback import LoopbackServer
from carrier.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    verify_signature,
)

SECRET = b"s3cret-for-tests"
CHAT = "/api/v1/agents/fish/channels/general/messages"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


class Receiver(LoopbackServer):
    """Answers each POST with the next scripted status (200 when the script is empty);
    ``hold`` keeps requests waiting until it is set."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(host="127.0.0.1", port=0, description="the webhook receiver")
        self.statuses = deque(statuses)
        self.received: list[Received] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.arrived = asyncio.Condition()

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.arrived:
            self.received.append(Received(dict(request.headers), body))
            self.arrived.notify_all()
        await self.hold.wait()
        return web.Response(status=self.statuses.popleft() if self.statuses else 200)

    async def wait_for(self, count: int) -> list[Received]:
        async with asyncio.timeout(10), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return self.received

    @property
    def hook(self) -> str:
        return self.url + "/hook"


def _dispatcher(url: str, **options: float) -> WebhookDispatcher:
    return WebhookDispatcher(
        "fish", [url], SECRET, backoff_seconds=options.pop("backoff_seconds", 0.01), **options
    )


async def test_a_reply_is_posted_signed_with_its_reason(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        dispatcher = _dispatcher(receiver.hook)
        async with running_api(make_settings(tmp_path), observers=[dispatcher]) as api:
            async with api.client(api.chat_key) as client:
                result = (
                    await client.post(CHAT, json={"author_id": "ana", "text": "@fish webhook?"})
                ).json()
            [delivery] = await receiver.wait_for(1)
    headers = delivery.headers
    assert headers[EVENT_HEADER] == "reply" and headers[DELIVERY_HEADER]
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], delivery.body, headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        b"other", headers[TIMESTAMP_HEADER], delivery.body, headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], delivery.body + b" ", headers[SIGNATURE_HEADER]
    )
    data = delivery.payload["data"]
    assert isinstance(data, dict)
    assert data["reply"] == {
        "id": result["reply"]["id"],
        "text": result["reply"]["text"],
        "reason": "mention",
        "source": result["reply"]["source"],
    }
    assert data["message"]["author_id"] == "ana" and data["channel_id"] == "general"


async def test_consolidation_is_posted(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        dispatcher = _dispatcher(receiver.hook)
        async with running_api(make_settings(tmp_path), observers=[dispatcher]) as api:
            async with api.client() as client:
                assert (await client.post("/api/v1/agents/fish/consolidate")).status_code == 200
            [delivery] = await receiver.wait_for(1)
    assert delivery.headers[EVENT_HEADER] == "consolidation"
    data = delivery.payload["data"]
    assert isinstance(data, dict) and data["agent_id"] == "fish"
    assert "messages_archived" in data["report"]


async def test_failures_are_retried_with_the_same_delivery_id() -> None:
    async with Receiver(503, 500, 200) as receiver:
        dispatcher = _dispatcher(receiver.hook, max_attempts=5)
        dispatcher.emit("reply", {"n": 1})
        await dispatcher.drain()
        await dispatcher.aclose()
    ids = {r.headers[DELIVERY_HEADER] for r in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    assert dispatcher.delivered == 1 and dispatcher.failed == 0


async def test_a_4xx_is_final_and_attempts_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="carrier.webhooks")
    async with Receiver(400, 500, 500, 500) as receiver:
        dispatcher = _dispatcher(receiver.hook + "?token=receivers-own-secret", max_attempts=3)
        dispatcher.emit("reply", {"n": 1})  # 400: given up at once
        await dispatcher.drain()
        dispatcher.emit("reply", {"n": 2})  # 500 x3: given up after max_attempts
        await dispatcher.drain()
        await dispatcher.aclose()
    assert len(receiver.received) == 4 and dispatcher.failed == 2
    # Logged: the event, the host and the status; never a secret or a signature.
    assert "HTTP 400" in caplog.text and "HTTP 500" in caplog.text
    assert SECRET.decode() not in caplog.text and "receivers-own-secret" not in caplog.text
    assert "sha256=" not in caplog.text


async def test_an_unreachable_receiver_is_given_up_on() -> None:
    dispatcher = _dispatcher("http://127.0.0.1:9/hook", max_attempts=2)
    dispatcher.emit("reply", {"n": 1})
    await dispatcher.drain()
    await dispatcher.aclose()
    assert dispatcher.failed == 1 and dispatcher.delivered == 0


async def test_a_stalled_receiver_never_holds_up_a_reply(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        receiver.hold.clear()  # the receiver takes every request and answers none
        dispatcher = _dispatcher(receiver.hook, timeout_seconds=30)
        async with running_api(make_settings(tmp_path), observers=[dispatcher]) as api:
            async with api.client(api.chat_key) as client:
                for i in range(3):
                    response = await client.post(
                        CHAT, json={"author_id": "ana", "text": f"@fish hello {i}"}
                    )
                    assert response.json()["reply"] is not None
            await receiver.wait_for(3)
            # Every reply came back while its webhook was still unanswered.
            assert dispatcher.delivered == 0
            receiver.hold.set()
            await dispatcher.drain()
            assert dispatcher.delivered == 3


async def test_the_queue_is_bounded() -> None:
    async with Receiver() as receiver:
        receiver.hold.clear()
        dispatcher = _dispatcher(receiver.hook, queue_size=2, workers=1)
        for n in range(10):
            dispatcher.emit("reply", {"n": n})
        await receiver.wait_for(1)
        # emitted faster than anything is sent: two queued, the rest dropped (and counted)
        assert dispatcher.dropped == 8
        receiver.hold.set()
        await dispatcher.drain()
        await dispatcher.aclose()
    assert dispatcher.delivered == 2


def test_webhooks_need_their_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("CARRIER_WEBHOOK_SECRET", raising=False)
    settings = make_settings(tmp_path, webhooks={"urls": ["http://127.0.0.1:9/hook"]})
    with pytest.raises(ConfigError, match="CARRIER_WEBHOOK_SECRET"):
        build_observers(settings)
    monkeypatch.setenv("CARRIER_WEBHOOK_SECRET", "x")
    [observer] = build_observers(settings)
    assert isinstance(observer, WebhookDispatcher) and observer.urls == ("http://127.0.0.1:9/hook",)
    assert build_observers(make_settings(tmp_path)) == []
