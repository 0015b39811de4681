"""Estimated prices of LLM calls, per million tokens, for the usage ledger.

Estimates only: providers change prices and bill by their own counts.  Operators override or
add models with ``llm.prices`` in the configuration; local servers cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


# Public list prices in USD per 1M tokens, by model-name prefix (longest prefix wins).
KNOWN_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
    "claude-haiku-4": Price(1.00, 5.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
}
FREE = Price(0.0, 0.0)


def price_of(model: str, overrides: Mapping[str, Price] | None = None) -> Price:
    """The price for ``model``: an override by exact name, else the longest known prefix,
    else free (a local or unknown model)."""
    if overrides and model in overrides:
        return overrides[model]
    matches = [prefix for prefix in KNOWN_PRICES if model.startswith(prefix)]
    if not matches:
        return FREE
    return KNOWN_PRICES[max(matches, key=len)]
