"""The OpenAI-compatible embedder through the official SDK against the scripted server on
127.0.0.1 (its ``/v1/embeddings`` answers deterministic unit vectors per text)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from carrier.memory.embeddings import (
    Embedder,
    EmbeddingError,
    EmbeddingUnavailable,
    create_embedder,
)
from carrier.memory.embeddings.openai_compatible import MAX_INPUT_CHARS, OpenAICompatibleEmbedder
from carrier.settings import ConfigError, EmbeddingSettings
from carrier.testing.llm_server import ScriptedLLMServer
from carrier.testing.loopback import SilentServer

Make = Callable[..., OpenAICompatibleEmbedder]


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    async with ScriptedLLMServer(embedding_dimensions=16) as running:
        yield running


@pytest.fixture
async def make(server: ScriptedLLMServer) -> AsyncIterator[Make]:
    made: list[OpenAICompatibleEmbedder] = []

    def build(**overrides: object) -> OpenAICompatibleEmbedder:
        options: dict[str, object] = {
            "model": "scripted-embed",
            "dimensions": 16,
            "base_url": server.openai_base_url,
            "api_key": "sk-test",
            "timeout_seconds": 5.0,
            "max_retries": 0,
        }
        options.update(overrides)
        embedder = OpenAICompatibleEmbedder(**options)  # type: ignore[arg-type]
        made.append(embedder)
        return embedder

    yield build
    for embedder in made:
        await embedder.aclose()


def embedding_requests(server: ScriptedLLMServer) -> list[list[str]]:
    return [list(r.body["input"]) for r in server.requests if r.api == "embeddings"]


async def test_vectors_come_back_in_order_as_unit_float32_rows(
    server: ScriptedLLMServer, make: Make
) -> None:
    embedder = make()
    assert isinstance(embedder, Embedder)
    assert (embedder.model, embedder.dimensions) == ("openai/scripted-embed", 16)
    texts = ["I have a cat", "ok", "the weather is nice"]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (3, 16)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Row i is text i's vector (the server's vectors are a function of the text).
    for i, text in enumerate(texts):
        np.testing.assert_allclose((await embedder.embed([text]))[0], vectors[i], atol=1e-6)
    assert len({row.tobytes() for row in vectors}) == 3
    request = server.requests[0]
    assert request.path == "/v1/embeddings"
    assert request.body["model"] == "scripted-embed"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert "dimensions" not in request.body  # an unknown model is not asked to shorten


async def test_texts_are_sent_in_batches(server: ScriptedLLMServer, make: Make) -> None:
    embedder = make(batch_size=2)
    texts = [f"message {i}" for i in range(5)]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (5, 16)
    assert embedding_requests(server) == [texts[0:2], texts[2:4], texts[4:5]]


async def test_empty_input_sends_nothing(server: ScriptedLLMServer, make: Make) -> None:
    vectors = await make().embed([])
    assert vectors.shape == (0, 16)
    assert server.requests == []


async def test_odd_text_is_made_acceptable_before_sending(
    server: ScriptedLLMServer, make: Make
) -> None:
    texts = ["", "   ", "\x00\x07bell\x1b[0m", "🐟" * 10, "x" * 100_000, "\ud800 lone"]
    vectors = await make().embed(texts)
    assert vectors.shape == (len(texts), 16)
    assert np.isfinite(vectors).all()
    (sent,) = embedding_requests(server)
    assert sent[0] == sent[1] == " "  # the API rejects empty strings
    assert sent[2] == "  bell [0m"
    assert sent[3] == "🐟" * 10
    assert len(sent[4]) == MAX_INPUT_CHARS
    assert sent[5] == "? lone"


async def test_a_shortening_model_is_asked_for_the_configured_size(
    server: ScriptedLLMServer, make: Make
) -> None:
    embedder = make(model="text-embedding-3-small", dimensions=8)
    vectors = await embedder.embed(["hello"])
    assert vectors.shape == (1, 8)
    assert server.requests[0].body["dimensions"] == 8


async def test_a_size_mismatch_is_a_clear_error(make: Make) -> None:
    # text-embedding-3-small is 1536 wide; this server answers 16.
    embedder = make(model="text-embedding-3-small", dimensions=None)
    assert embedder.dimensions == 1536
    with pytest.raises(EmbeddingError) as caught:
        await embedder.embed(["hello"])
    assert not isinstance(caught.value, EmbeddingUnavailable)
    assert "16 dimensions" in str(caught.value)
    assert "1536" in str(caught.value)


async def test_an_unreachable_server_is_unavailable(make: Make) -> None:
    async with ScriptedLLMServer() as gone:
        url = gone.openai_base_url
    embedder = make(base_url=url)
    with pytest.raises(EmbeddingUnavailable, match="cannot connect") as caught:
        await embedder.embed(["hello"])
    assert url in str(caught.value)
    assert "sk-test" not in str(caught.value)


async def test_a_wrong_url_or_model_is_named(server: ScriptedLLMServer, make: Make) -> None:
    embedder = make(base_url=f"{server.url}/nowhere/v1")
    with pytest.raises(EmbeddingUnavailable, match="HTTP 404") as caught:
        await embedder.embed(["hello"])
    assert "embeddings.model" in str(caught.value)


async def test_a_server_that_never_answers_times_out() -> None:
    async with SilentServer() as silent:
        embedder = OpenAICompatibleEmbedder(
            model="scripted-embed",
            dimensions=16,
            base_url=f"{silent.url}/v1",
            timeout_seconds=0.3,
            max_retries=0,
        )
        try:
            with pytest.raises(EmbeddingUnavailable, match=r"no answer within 0\.3 s"):
                await asyncio.wait_for(embedder.embed(["hello"]), 10)
        finally:
            await embedder.aclose()


async def test_create_embedder_reads_the_key_from_the_named_variable(
    server: ScriptedLLMServer,
) -> None:
    settings = EmbeddingSettings(
        provider="openai",
        model="scripted-embed",
        base_url=server.openai_base_url,
        api_key_env="EMBED_KEY",
        dimensions=16,
        batch_size=10,
    )
    embedder = create_embedder(settings, {"EMBED_KEY": "sk-from-env"})
    try:
        assert isinstance(embedder, OpenAICompatibleEmbedder)
        vectors = await embedder.embed(["one", "two"])
        assert vectors.shape == (2, 16)
        assert server.requests[0].headers["Authorization"] == "Bearer sk-from-env"
    finally:
        await embedder.aclose()


def test_a_missing_key_variable_is_named() -> None:
    settings = EmbeddingSettings(provider="openai", api_key_env="EMBED_KEY")
    with pytest.raises(ConfigError, match="EMBED_KEY"):
        create_embedder(settings, {})


def test_an_unknown_model_needs_its_size() -> None:
    settings = EmbeddingSettings(provider="openai", model="nomic-embed-text", api_key_env=None)
    with pytest.raises(ConfigError, match=r"embeddings\.dimensions"):
        create_embedder(settings, {})
