"""Prometheus metrics, in a registry of their own (built by bootstrap, never at import)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ACTIVE_WINDOW_SECONDS = 15 * 60
"""A user counts as active for this long after their last message."""


class ActiveUsers:
    """Who spoke lately (any client), for the ``carrier_active_users`` gauge.  Bounded: a
    user's entry is replaced on each message and old entries are pruned on reading."""

    def __init__(
        self,
        window_seconds: float = ACTIVE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_seconds
        self._clock = clock
        self._last_seen: dict[str, float] = {}

    def saw(self, user_id: str) -> None:
        self._last_seen[user_id] = self._clock()
        if len(self._last_seen) > 100_000:
            self.count()

    def count(self) -> int:
        cutoff = self._clock() - self._window
        stale = [user for user, seen in self._last_seen.items() if seen < cutoff]
        for user in stale:
            del self._last_seen[user]
        return len(self._last_seen)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.llm_tokens = Counter(
            "carrier_llm_tokens",
            "LLM tokens by provider, model and direction (in/out).",
            ["provider", "model", "direction"],
            registry=self.registry,
        )
        self.llm_cost = Counter(
            "carrier_llm_cost_usd",
            "Estimated LLM cost in USD by provider and model.",
            ["provider", "model"],
            registry=self.registry,
        )
        self.llm_calls = Counter(
            "carrier_llm_calls",
            "LLM calls by provider, model and purpose.",
            ["provider", "model", "purpose"],
            registry=self.registry,
        )
        self.replies = Counter(
            "carrier_replies",
            "Replies sent, by the generator that produced them.",
            ["source"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "carrier_decisions",
            "Answer/silence decisions by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "carrier_throttled",
            "Requests refused by a rate limit, by scope.",
            ["scope"],
            registry=self.registry,
        )
        self.reply_seconds = Histogram(
            "carrier_reply_seconds",
            "Time from receiving a message to its reply.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.active = ActiveUsers()
        self.active_users = Gauge(
            "carrier_active_users",
            "Users who sent a message in the last 15 minutes (any client).",
            registry=self.registry,
        )
        self.active_users.set_function(self.active.count)
        # The HTTP API's own figures (carrier.clients.http): error rate = 5xx / all.
        self.http_seconds = Histogram(
            "carrier_http_request_seconds",
            "HTTP API response time by route template and method.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.http_responses = Counter(
            "carrier_http_responses",
            "HTTP API responses by route template, method and status class (2xx, 4xx, 5xx).",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.websockets = Gauge(
            "carrier_websocket_connections",
            "Open WebSocket chat connections.",
            registry=self.registry,
        )
        self.memory_size = Gauge(
            "carrier_memory_size",
            "Stored memory by kind (facts, short_term_messages, archived_messages).",
            ["kind"],
            registry=self.registry,
        )
