"""Prometheus metrics, in a registry of their own (built by bootstrap, never at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
