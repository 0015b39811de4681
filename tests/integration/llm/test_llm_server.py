"""The scripted LLM server itself: scripts, recording, strictness, embeddings and speed."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from carrier.testing import llm_server as fake
from carrier.testing.llm_server import RecordedRequest, ScriptedLLMServer

MESSAGES = [{"role": "user", "content": "hi"}]


def openai_client(server: ScriptedLLMServer, timeout: float = 10) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="k", max_retries=0, timeout=timeout
    )


async def ask(client: openai.AsyncOpenAI) -> str:
    response = await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    return response.choices[0].message.content or ""


async def test_the_script_is_consumed_in_order_then_the_default_answers() -> None:
    async with ScriptedLLMServer(
        fake.answer("one"), fake.answer("two"), default=fake.answer("default")
    ) as server:
        client = openai_client(server)
        assert server.pending == 2
        assert [await ask(client) for _ in range(3)] == ["one", "two", "default"]
        assert server.pending == 0
        server.script(fake.answer("three"))
        assert await ask(client) == "three"
        await client.close()


async def test_the_default_may_answer_from_the_request() -> None:
    def echo(received: RecordedRequest) -> fake.Behaviour:
        return fake.answer("you said: " + received.messages[-1]["content"])

    async with ScriptedLLMServer(default=echo) as server:
        client = openai_client(server)
        assert await ask(client) == "you said: hi"
        await client.close()


async def test_requests_are_recorded_with_headers_and_body() -> None:
    async with ScriptedLLMServer() as server:
        client = openai_client(server)
        await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "system", "content": "be a fish"}, *MESSAGES],  # type: ignore[list-item]
            max_tokens=7,
        )
        await client.close()
        (received,) = server.requests
        assert received.api == "openai"
        assert received.path == "/v1/chat/completions"
        assert received.model == "gpt-test"
        assert received.system == "be a fish"
        assert received.messages == MESSAGES
        assert received.body["max_tokens"] == 7
        assert received.headers["Authorization"] == "Bearer k"


async def test_strict_mode_rejects_what_anthropic_rejects() -> None:
    async with ScriptedLLMServer() as server:
        client = anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="k", max_retries=0
        )
        with pytest.raises(anthropic.BadRequestError, match="alternate"):
            await client.messages.create(
                model="claude-scripted-1",
                max_tokens=5,
                messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            )
        with pytest.raises(anthropic.BadRequestError, match="first message"):
            await client.messages.create(
                model="claude-scripted-1",
                max_tokens=5,
                messages=[{"role": "assistant", "content": "a"}],
            )
        with pytest.raises(anthropic.BadRequestError, match="temperature"):
            await client.messages.create(
                model="claude-scripted-1",
                max_tokens=5,
                messages=[{"role": "user", "content": "a"}],
                extra_body={"temperature": 0.5},
            )
        await client.close()
        assert server.pending == 0  # rejected requests consume no behaviour


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    async with ScriptedLLMServer(embedding_dimensions=8) as server:
        client = openai_client(server)
        # The SDK asks for base64 by itself and decodes it; "float" comes as a JSON list.
        first = await client.embeddings.create(model="e", input=["river", "kitchen"])
        again = await client.embeddings.create(model="e", input="river", encoding_format="float")
        packed = await client.embeddings.create(model="e", input="river", encoding_format="base64")
        await client.close()
    vectors = [item.embedding for item in first.data]
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] != vectors[1]
    assert again.data[0].embedding == pytest.approx(vectors[0], rel=1e-5)
    raw = base64.b64decode(str(packed.data[0].embedding))
    assert list(struct.unpack("<8f", raw)) == pytest.approx(vectors[0], rel=1e-5)
    assert server.pending == 0
    assert [r.body.get("encoding_format") for r in server.requests] == [
        "base64",
        "float",
        "base64",
    ]


async def test_stopping_ends_a_stall_at_once() -> None:
    server = await ScriptedLLMServer(fake.stall(3600)).start()
    client = openai_client(server, timeout=30)
    call = asyncio.create_task(ask(client))
    await server.wait_for_requests(1)
    started = time.monotonic()
    await server.stop()
    await asyncio.gather(call, return_exceptions=True)
    assert time.monotonic() - started < 10  # not the 3600 s stall
    await client.close()


async def test_two_hundred_slow_answers_run_side_by_side() -> None:
    async with ScriptedLLMServer(default=fake.answer("slow but sure", delay=1.0)) as server:
        client = openai_client(server, timeout=30)
        answers = await asyncio.gather(*(ask(client) for _ in range(200)))
        await client.close()
    assert answers == ["slow but sure"] * 200
    # All 200 were in flight at once: nothing serialises.  (How fast is bench/'s job.)
    assert server.peak_active == 200


async def test_the_servers_own_time_per_request_includes_its_delay() -> None:
    async with ScriptedLLMServer(fake.answer("slow", delay=0.2), fake.answer("fast")) as server:
        client = openai_client(server)
        try:
            assert await ask(client) == "slow"
            assert await ask(client) == "fast"
        finally:
            await client.close()
    (slow, slow_seconds), (fast, fast_seconds) = server.served
    assert (slow, fast) == (server.requests[0], server.requests[1])
    assert slow_seconds >= 0.2  # never less than the scripted delay
    assert 0 < fast_seconds < slow_seconds


def test_the_server_process_writes_its_timings(tmp_path: Path) -> None:
    timings = tmp_path / "timings.jsonl"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "carrier.testing.llm_server"),
            *("--answer", "Blub.", "--timings", str(timings)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi #7"}]})
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=body.encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["choices"][0]["message"]["content"] == "Blub."
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    assert [line["last"] for line in lines] == ["hi #7"]
    assert lines[0]["seconds"] > 0
    assert "requests 1" in out


async def test_a_server_that_remembers_nothing_still_answers_and_counts_usage() -> None:
    """``remember=False`` (benchmarks): nothing piles up, usage is still counted."""
    async with ScriptedLLMServer(fake.answer("Blub, fine water."), remember=False) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k")
        try:
            done = await client.chat.completions.create(
                model="m",
                messages=[
                    {"role": "system", "content": "You are a fish."},
                    {"role": "user", "content": "x" * 40},
                ],
            )
        finally:
            await client.close()
    assert done.choices[0].message.content == "Blub, fine water."
    assert done.usage is not None
    assert done.usage.prompt_tokens == (len("You are a fish.") + 40 + 3) // 4
    assert done.usage.completion_tokens == (len("Blub, fine water.") + 3) // 4
    assert server.answered == 1 and server.requests == [] and server.served == []
