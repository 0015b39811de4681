"""Token counting works offline: tiktoken's cl100k for OpenAI models, an estimate otherwise."""

from __future__ import annotations

import pytest

from carrier.generation.llm.tokens import estimate_tokens, is_openai_model, token_counter_for


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", True),
        ("gpt-3.5-turbo", True),
        ("o3-mini", True),
        ("openai/gpt-4.1", True),
        ("claude-sonnet-4-5", False),
        ("llama3.1:8b", False),
        ("mistral-7b-instruct", False),
    ],
)
def test_openai_models_are_recognised(model: str, expected: bool) -> None:
    assert is_openai_model(model) is expected


def test_openai_models_are_counted_with_tiktoken_offline() -> None:
    count = token_counter_for("gpt-4o-mini")
    assert count is not estimate_tokens
    # cl100k_base: "hello world" is two tokens, " hello" one; the estimate would say 150.
    assert count("hello world") == 2
    text = "hello" + " hello" * 99
    assert count(text) == 100
    assert estimate_tokens(text) == 150


def test_other_models_get_the_estimate() -> None:
    count = token_counter_for("claude-sonnet-4-5")
    assert count is estimate_tokens
    assert count("") == 0
    assert count("abcd") == 1
    assert count("abcde") == 2
