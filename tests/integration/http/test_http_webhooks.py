"""Outbound webhooks against a real receiver on loopback: signed, retried with backoff,
never holding up a reply, bounded."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import random
import time
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
    arrived_at: float  # time.monotonic() when the request reached the receiver

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
            self.received.append(Received(dict(request.headers), body, time.monotonic()))
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


def _dispatcher(url: str, rng: random.Random | None = None, **options: float) -> WebhookDispatcher:
    return WebhookDispatcher(
        "fish",
        [url],
        SECRET,
        backoff_seconds=options.pop("backoff_seconds", 0.01),
        rng=rng,
        **options,
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
    # The documented format, computed here as a receiver would (not by the project's code):
    # "sha256=" + hex HMAC-SHA256 over "<timestamp>.<raw body>".
    timestamp = headers[TIMESTAMP_HEADER].encode("ascii")
    expected = hmac.new(SECRET, timestamp + b"." + delivery.body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == "sha256=" + expected
    assert abs(int(timestamp) - time.time()) < 300
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


async def test_an_admin_triggered_consolidation_is_posted(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        dispatcher = _dispatcher(receiver.hook)
        async with running_api(make_settings(tmp_path), observers=[dispatcher]) as api:
            async with api.client(api.chat_key) as chat:
                for text in ("I love sailing boats", "hello there"):
                    response = await chat.post(CHAT, json={"author_id": "ana", "text": text})
                    assert response.status_code == 200
            async with api.client() as client:
                response = await client.post("/api/v1/agents/fish/consolidate")
            assert response.status_code == 200
            report = response.json()
            [delivery] = await receiver.wait_for(1)
    assert delivery.headers[EVENT_HEADER] == "consolidation"
    assert verify_signature(
        SECRET,
        delivery.headers[TIMESTAMP_HEADER],
        delivery.body,
        delivery.headers[SIGNATURE_HEADER],
    )
    data = delivery.payload["data"]
    assert isinstance(data, dict) and data["agent_id"] == "fish"
    # The webhook carries what this consolidation did: the two messages were archived.
    assert data["report"] == report and report["messages_archived"] >= 2


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


async def test_retries_back_off_exponentially_within_the_jitter_bounds() -> None:
    base, seed = 0.1, 14
    replay = random.Random(seed)  # the same draws the dispatcher's rng makes, one per retry
    expected = [base * 2**n * (0.5 + replay.random()) for n in range(4)]
    async with Receiver(503, 503, 429, 503, 200) as receiver:
        dispatcher = _dispatcher(
            receiver.hook, rng=random.Random(seed), backoff_seconds=base, max_attempts=5
        )
        dispatcher.emit("reply", {"n": 1})
        await dispatcher.drain()
        await dispatcher.aclose()
    arrivals = [r.arrived_at for r in receiver.received]
    assert len(arrivals) == 5 and dispatcher.delivered == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for n, (gap, delay) in enumerate(zip(gaps, expected, strict=True)):
        # backoff * 2**n, times a jitter factor in [0.5, 1.5): the seeded draw, never less
        assert base * 2**n * 0.5 <= delay < base * 2**n * 1.5
        assert gap >= delay - 0.002, (n, gaps, expected)
    # With this seed every wait is at least 0.18 s longer than the one before.
    assert all(b - a > 0.15 for a, b in itertools.pairwise(expected))
    assert gaps == sorted(gaps), gaps
