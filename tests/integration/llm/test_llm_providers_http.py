"""The official openai and anthropic SDKs against the scripted servers, over real HTTP:
every behaviour comes out as a Completion or the right LLMError."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from carrier.generation.llm.base import (
    LLM,
    ChatMessage,
    MalformedResponse,
    Prompt,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from carrier.testing import llm_server as fake
from carrier.testing.llm_server import ScriptedLLMServer

ProviderFactory = Callable[..., LLM]

PROMPT = Prompt(
    "You are Finnegan, a fish.",
    [
        ChatMessage("user", "Bob: morning"),
        ChatMessage("user", "Alice: hi fish"),
        ChatMessage("assistant", "hello!"),
        ChatMessage("user", "Alice: how is the river?"),
    ],
)
KINDS = ["openai", "anthropic"]
BOTH = [(kind, stream) for kind in KINDS for stream in (False, True)]
IDS = [f"{kind}-{'stream' if stream else 'whole'}" for kind, stream in BOTH]


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_an_answer(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.answer("The river is lovely today."))
    llm = make_provider(kind, server, stream=stream)
    completion = await llm.complete(PROMPT, max_tokens=123, temperature=0.5)
    assert completion.text == "The river is lovely today."
    assert completion.provider == kind
    assert completion.model == llm.model
    assert completion.input_tokens > 0 and completion.output_tokens == 7
    assert completion.estimated_usage is False
    (received,) = server.requests
    assert received.api == kind
    assert received.stream is stream
    assert received.system == "You are Finnegan, a fish."
    assert received.body["max_tokens"] == 123


async def test_openai_gets_every_message_and_the_temperature(
    server: ScriptedLLMServer, make_provider: ProviderFactory
) -> None:
    await make_provider("openai", server).complete(PROMPT, max_tokens=50, temperature=0.4)
    body = server.requests[0].body
    assert body["temperature"] == 0.4
    assert body["messages"][0] == {"role": "system", "content": "You are Finnegan, a fish."}
    assert server.requests[0].messages == [
        {"role": m.role, "content": m.content} for m in PROMPT.messages
    ]
    assert server.requests[0].headers["Authorization"] == "Bearer sk-test"
    assert server.requests[0].headers["Content-Type"] == "application/json"


async def test_anthropic_gets_merged_alternating_turns_and_no_sampling_parameters(
    server: ScriptedLLMServer, make_provider: ProviderFactory
) -> None:
    prompt = Prompt("sys", [ChatMessage("assistant", "I spoke first"), *PROMPT.messages])
    await make_provider("anthropic", server).complete(prompt, max_tokens=50, temperature=0.4)
    received = server.requests[0]
    assert received.system == "sys"
    assert "temperature" not in received.body
    assert received.messages == [
        {"role": "user", "content": "(The conversation so far.)"},
        {"role": "assistant", "content": "I spoke first"},
        {"role": "user", "content": "Bob: morning\nAlice: hi fish"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "Alice: how is the river?"},
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_in_chunks_is_joined(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str
) -> None:
    server.script(fake.stream("one two three four five", chunks=5, delay=0.01))
    completion = await make_provider(kind, server, stream=True).complete(
        PROMPT, max_tokens=50, temperature=0.5
    )
    assert completion.text == "one two three four five"


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_a_stall_is_a_timeout(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.stall(30))
    llm = make_provider(kind, server, stream=stream, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        await llm.complete(PROMPT, max_tokens=50, temperature=0.5)
    assert time.monotonic() - started < 10  # the 0.3 s timeout, not the 30 s stall
    assert caught.value.provider == kind


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_stream_past_the_deadline_is_a_timeout_not_half_a_reply(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str
) -> None:
    server.script(fake.stream("a b c d e f", chunks=6, delay=0.15))
    llm = make_provider(kind, server, stream=True, timeout_seconds=0.4)
    with pytest.raises(ProviderTimeout):
        await llm.complete(PROMPT, max_tokens=50, temperature=0.5)


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_429_with_retry_after(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.rate_limit(retry_after=17))
    with pytest.raises(RateLimited) as caught:
        await make_provider(kind, server, stream=stream).complete(
            PROMPT, max_tokens=50, temperature=0.5
        )
    assert caught.value.retry_after == 17
    assert len(server.requests) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize("kind", KINDS)
async def test_429_without_retry_after(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str
) -> None:
    server.script(fake.rate_limit(retry_after=None))
    with pytest.raises(RateLimited) as caught:
        await make_provider(kind, server).complete(PROMPT, max_tokens=50, temperature=0.5)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_unavailable(
    server: ScriptedLLMServer,
    make_provider: ProviderFactory,
    kind: str,
    stream: bool,
    status: int,
) -> None:
    server.script(fake.error(status))
    with pytest.raises(ProviderUnavailable, match=str(status) if kind == "openai" else "error"):
        await make_provider(kind, server, stream=stream).complete(
            PROMPT, max_tokens=50, temperature=0.5
        )
    assert len(server.requests) == 1


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_malformed_json(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.malformed_json())
    with pytest.raises(MalformedResponse):
        await make_provider(kind, server, stream=stream).complete(
            PROMPT, max_tokens=50, temperature=0.5
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_valid_json_of_the_wrong_shape_is_malformed(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str
) -> None:
    server.script(fake.wrong_shape())
    with pytest.raises(MalformedResponse):
        await make_provider(kind, server).complete(PROMPT, max_tokens=50, temperature=0.5)


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_a_connection_cut_midway_is_unavailable_never_half_a_reply(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.cut_stream_midway("This answer will never be finished, because"))
    with pytest.raises(ProviderUnavailable):
        await make_provider(kind, server, stream=stream).complete(
            PROMPT, max_tokens=50, temperature=0.5
        )


@pytest.mark.parametrize(("kind", "stream"), BOTH, ids=IDS)
async def test_quota_exhausted(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str, stream: bool
) -> None:
    server.script(fake.quota_exhausted())
    with pytest.raises(QuotaExhausted):
        await make_provider(kind, server, stream=stream).complete(
            PROMPT, max_tokens=50, temperature=0.5
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_nothing_listening_is_unavailable(
    server: ScriptedLLMServer, make_provider: ProviderFactory, kind: str
) -> None:
    llm = make_provider(kind, server)
    await server.stop()
    with pytest.raises(ProviderUnavailable, match="connection failed"):
        await llm.complete(PROMPT, max_tokens=50, temperature=0.5)
