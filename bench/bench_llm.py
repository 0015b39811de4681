"""The engine around LLM calls, against the scripted OpenAI-compatible server over HTTP.

    python bench/bench_llm.py

Targets (issue 4):
- the engine's own time around an LLM call (everything except the provider's time): p95 at
  most 20 ms;
- 200 concurrent conversations against a provider that takes 1 s per reply complete with no
  errors, within 2x of the ideal wall time (1 s), and the engine's own time unchanged.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.engine.pipeline import Engine
from carrier.generation.llm.base import LLM, Completion, Prompt
from carrier.generation.llm.generator import ChainProvider, LLMGenerator
from carrier.generation.llm.openai_chat import OpenAIChat
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.store import Store

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """The scripted server in a process of its own, so its work is not the engine's."""

    def __init__(self, answer: str, delay: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carrier.testing.llm_server",
                "--answer",
                answer,
                "--delay",
                str(delay),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        return out.strip()


class TimedLLM:
    """Wraps a provider and measures the time spent inside it, per calling task."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.spent: dict[asyncio.Task[object] | None, float] = {}

    async def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        began = time.perf_counter()
        try:
            return await self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature)
        finally:
            task = asyncio.current_task()
            self.spent[task] = self.spent.get(task, 0.0) + time.perf_counter() - began

    async def aclose(self) -> None:
        await self.inner.aclose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_phase(store: Store, base_url: str) -> tuple[Engine, TimedLLM]:
    settings = load_settings(
        None, rate_limits={"per_user": "100000/minute", "global": "1000000/minute"}
    )
    timed = TimedLLM(
        OpenAIChat(
            name="openai",
            model="gpt-4o-mini",
            api_key="sk-bench",
            base_url=base_url,
            timeout_seconds=30,
        )
    )
    llm = LLMGenerator([ChainProvider(timed)], max_transcript_tokens=1500)
    engine = build_engine_for(settings, store, "bot", rng=random.Random(1), llm=llm)
    assert engine.parts.responder.default_mode == "llm"
    return engine, timed


async def converse(engine: Engine, timed: TimedLLM, i: int, channel: str) -> tuple[float, float]:
    """One conversation turn; returns (total seconds, seconds inside the provider)."""
    msg = IncomingMessage(
        channel_id=channel,
        guild_id="g1",
        message_id=f"{channel}-{i}",
        author_id=f"user-{channel}",
        author_name=f"user{i}",
        text=f"fish, what do you think about the tide number {i}?",
        created_at=datetime.now(UTC),
        mentions_bot=True,
    )
    task = asyncio.current_task()
    began = time.perf_counter()
    outcome = await engine.handle(msg)
    total = time.perf_counter() - began
    provider = timed.spent.pop(task, 0.0)
    if outcome.reply is None or not outcome.reply.source.startswith("llm:"):
        raise RuntimeError(f"no LLM reply: {outcome.decision} {outcome.reply}")
    return total, provider


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(create_engine(f"sqlite+aiosqlite:///{tmp}/bench.db"))
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        await import_character(store, "fish", load_character(ROOT / "characters/fish.yaml"))

        fast = ServerProcess("Blub, the water is fine today.", delay=0.0)
        try:
            engine, timed = await run_phase(store, fast.openai_base_url)
            for i in range(20):  # warm up: SDK client, statement caches
                await asyncio.create_task(converse(engine, timed, i, "warm"))
            own: list[float] = []
            for i in range(300):
                total, provider = await asyncio.create_task(
                    converse(engine, timed, i, f"seq-{i % 10}")
                )
                own.append((total - provider) * 1000)
            await engine.aclose()
        finally:
            fast.stop()
        print(
            f"engine's own time around a zero-latency LLM call (300 sequential "
            f"conversations, server in another process): p50 {statistics.median(own):.2f} "
            f"ms, p95 {pct(own, 0.95):.2f} ms, p99 {pct(own, 0.99):.2f} ms "
            f"(target p95 <= 20 ms)"
        )

        slow = ServerProcess("Slow and steady, like the tide.", delay=1.0)
        try:
            engine, timed = await run_phase(store, slow.openai_base_url)
            await asyncio.create_task(converse(engine, timed, 0, "warm-slow"))
            began = time.perf_counter()
            results = await asyncio.gather(
                *(asyncio.create_task(converse(engine, timed, 0, f"load-{i}")) for i in range(200)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - began
            await engine.aclose()
        finally:
            served = slow.stop()
        errors = [r for r in results if isinstance(r, BaseException)]
        ok = [r for r in results if not isinstance(r, BaseException)]
        own_load = [(total - provider) * 1000 for total, provider in ok]
        print(
            f"200 concurrent conversations, provider 1 s per reply: {len(ok)} replies, "
            f"{len(errors)} errors, wall {wall:.2f} s = {wall:.2f}x the ideal 1 s "
            f"(target <= 2x); server: {served.splitlines()[-1] if served else '?'}"
        )
        if own_load:
            print(
                f"engine's own time under that load: p50 {statistics.median(own_load):.2f} ms, "
                f"p95 {pct(own_load, 0.95):.2f} ms"
            )
        for error in errors[:3]:
            print("error:", repr(error))
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
