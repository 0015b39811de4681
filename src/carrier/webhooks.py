"""Outbound webhooks: a signed POST to every configured URL when a reply is generated or
memory is consolidated.

The dispatcher is an engine observer (see :class:`carrier.engine.pipeline.EngineObserver`):
the engine hands it the event and goes on at once.  Deliveries wait in a bounded queue and are
sent by a few background workers, so a slow or dead receiver never delays a reply; when the
queue is full the newest event is dropped (and counted) instead of growing without bound.

Every request carries::

    Content-Type: application/json
    X-Carrier-Event: reply | consolidation
    X-Carrier-Delivery: <uuid, the same on every retry of one delivery>
    X-Carrier-Timestamp: <unix seconds>
    X-Carrier-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares it in
constant time and rejects old timestamps (replays).  A failed delivery (network error, timeout,
HTTP 429 or 5xx) is retried up to ``max_attempts`` times with exponential backoff
(``backoff_seconds * 2**n``, with jitter); other 4xx answers are final.  Logs name the event,
the URL's host and the status, never the secret or the signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2

from carrier.settings import ConfigError, WebhookSettings, environment_with_dotenv

if TYPE_CHECKING:
    from carrier.engine.messages import Outcome

log = logging.getLogger("carrier.webhooks")

SIGNATURE_HEADER = "X-Carrier-Signature"
TIMESTAMP_HEADER = "X-Carrier-Timestamp"
EVENT_HEADER = "X-Carrier-Event"
DELIVERY_HEADER = "X-Carrier-Delivery"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_seconds: float = 300.0,
) -> bool:
    """What a receiver does (also used by the tests): constant-time check, fresh timestamp."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def reply_payload(agent_id: str, outcome: Outcome) -> dict[str, Any]:
    """The ``reply`` event's body: the message, the reply and why it was sent."""
    msg, reply = outcome.message, outcome.reply
    assert reply is not None
    return {
        "agent_id": agent_id,
        "guild_id": msg.guild_id,
        "channel_id": msg.channel_id,
        "message": {
            "id": msg.message_id,
            "author_id": msg.author_id,
            "author_name": msg.author_name,
            "text": msg.text,
            "created_at": msg.created_at.isoformat(),
        },
        "reply": {
            "id": reply.message_id,
            "text": reply.text,
            "reason": reply.reason,
            "source": reply.source,
        },
        "decision": {
            "reason": outcome.decision.reason,
            "detail": outcome.decision.detail,
        },
    }


@dataclass(frozen=True, slots=True)
class _Delivery:
    event: str
    body: bytes
    delivery_id: str


class WebhookDispatcher:
    """Queues events and delivers them in the background.  Never blocks the caller."""

    def __init__(
        self,
        agent_id: str,
        urls: Sequence[str],
        secret: bytes,
        *,
        timeout_seconds: float = 10.0,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        queue_size: int = 1000,
        workers: int = 4,
        transport: httpx2.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not secret:
            raise ValueError("webhooks need a signing secret")
        self.agent_id = agent_id
        self.urls = tuple(urls)
        self._secret = secret
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._queue_size = queue_size
        self._workers = workers
        self._transport = transport
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[tuple[str, _Delivery]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx2.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @classmethod
    def from_settings(
        cls,
        agent_id: str,
        settings: WebhookSettings,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> WebhookDispatcher:
        """The dispatcher ``settings`` configure; the secret comes from ``environ`` (default
        the environment over ``.env``).  Raises :class:`ConfigError` naming the variable when
        it is unset."""
        env = environment_with_dotenv() if environ is None else environ
        secret = env.get(settings.secret_env, "")
        if not secret:
            raise ConfigError(
                f"webhooks are configured but {settings.secret_env} is not set; "
                "put the signing secret in that environment variable (or .env)"
            )
        return cls(
            agent_id,
            settings.urls,
            secret.encode("utf-8"),
            timeout_seconds=settings.timeout_seconds,
            max_attempts=settings.max_attempts,
            backoff_seconds=settings.backoff_seconds,
            **options,
        )

    # -- the engine observer -----------------------------------------------------------------

    def replied(self, outcome: Outcome) -> None:
        if outcome.reply is not None:
            self.emit("reply", reply_payload(self.agent_id, outcome))

    def consolidated(self, agent_id: str, report: Mapping[str, Any]) -> None:
        self.emit("consolidation", {"agent_id": agent_id, "report": dict(report)})

    # -- queueing ------------------------------------------------------------------------------

    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue ``event`` for every URL; returns at once (drops it when the queue is full)."""
        if not self.urls:
            return
        queue = self._ensure_started()
        body = json.dumps(
            {"event": event, "sent_at": time.time(), "data": payload},
            separators=(",", ":"),
            default=str,
        ).encode("utf-8")
        for url in self.urls:
            delivery = _Delivery(event, body, uuid.uuid4().hex)
            try:
                queue.put_nowait((url, delivery))
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("webhook queue full: dropped %s event for %s", event, _host(url))

    async def drain(self) -> None:
        """Wait until every queued delivery has been sent or given up."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self, *, grace_seconds: float = 5.0) -> None:
        """Deliver what is queued (for up to ``grace_seconds``), then stop the workers."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._queue = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _ensure_started(self) -> asyncio.Queue[tuple[str, _Delivery]]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._client = httpx2.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            )
            self._tasks = [
                asyncio.create_task(self._work(self._queue), name=f"webhook-worker-{n}")
                for n in range(self._workers)
            ]
        return self._queue

    async def _work(self, queue: asyncio.Queue[tuple[str, _Delivery]]) -> None:
        while True:
            url, delivery = await queue.get()
            try:
                await self._deliver(url, delivery)
            except Exception:  # a bug here must not stop the worker
                log.exception("webhook delivery of %s failed", delivery.event)
            finally:
                queue.task_done()

    async def _deliver(self, url: str, delivery: _Delivery) -> None:
        assert self._client is not None
        for attempt in range(1, self._max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: delivery.event,
                DELIVERY_HEADER: delivery.delivery_id,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, delivery.body),
            }
            try:
                response = await self._client.post(url, content=delivery.body, headers=headers)
                status: int | None = response.status_code
                problem = f"HTTP {status}"
            except httpx2.HTTPError as exc:
                status = None
                problem = type(exc).__name__
            if status is not None and status < 400:
                self.delivered += 1
                return
            final = status is not None and status < 500 and status != 429
            if final or attempt == self._max_attempts:
                self.failed += 1
                log.warning(
                    "webhook %s to %s failed after %d attempt(s): %s",
                    delivery.event,
                    _host(url),
                    attempt,
                    problem,
                )
                return
            delay = self._backoff * 2 ** (attempt - 1)
            delay *= 0.5 + self._rng.random()  # jitter: receivers coming back are not stampeded
            log.info(
                "webhook %s to %s: %s; retry %d in %.1fs",
                delivery.event,
                _host(url),
                problem,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)


def _host(url: str) -> str:
    # Only the host: a URL's path or query may carry a token of the receiver's.
    return urlsplit(url).netloc.rsplit("@", 1)[-1]
