"""Browser tests: Playwright driving Debian's Chromium against a real API server on loopback.

Skipped only when no Chromium is installed and ``CI`` is not set; under ``CI=true`` a missing
Chromium fails the run (``.ci/run`` installs it with apt).  Never ``playwright install``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.clients.http.app import create_app
from carrier.clients.http.server import HTTP_BOT_ID, uvicorn_config
from carrier.generation.llm.generator import ChainProvider, LLMGenerator
from carrier.generation.llm.openai_chat import OpenAIChat
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import load_settings
from carrier.testing import llm_server as fake
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CARRIER_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        if IN_CI:
            pytest.fail(f"Chromium is required under CI and was not found at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium)")
    return path


def prompt_echo(request: fake.RecordedRequest) -> fake.Behaviour:
    """A stand-in model that answers from its prompt: the parts of the system prompt that
    share a word with the question.  So a reply shows what the prompt held."""
    question = request.messages[-1]["content"].lower() if request.messages else ""
    words = {w for w in re.findall(r"[a-z]{5,}", question)}
    parts = [p.strip() for p in re.split(r"[\n,]", request.system) if p.strip()]
    found = [p for p in parts if any(w[:6] in p.lower() for w in words)]
    return fake.answer("; ".join(found[:3]) if found else "Blub.")


@dataclass
class Served:
    url: str
    admin_key: str


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = load_settings(
        None,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"},
        agent={"id": "fish", "character_file": str(ROOT / "characters/fish.yaml")},
        rate_limits={"per_user": "100000/minute", "global": "1000000/minute"},
    )
    async with fake.ScriptedLLMServer(default=prompt_echo) as llm_server:
        llm = LLMGenerator(
            [
                ChainProvider(
                    OpenAIChat(
                        name="scripted",
                        model="echo",
                        api_key="sk-test",
                        base_url=llm_server.openai_base_url,
                        timeout_seconds=10,
                    )
                )
            ],
            max_transcript_tokens=1500,
        )
        store = await prepare_store(settings)
        memory = Memory(
            store,
            HashingEmbedder(),
            create_vector_index(settings, store),
            agent_id="fish",
            extractor=OfflineExtractor(),
        )
        engine = build_engine_for(
            settings, store, HTTP_BOT_ID, rng=random.Random(3), llm=llm, memory=memory, observers=[]
        )
        admin = await store.api_keys.create("fish", "browser", ["chat", "admin"])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = create_app(settings, store, engine, memory)
        server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            yield Served(f"http://127.0.0.1:{port}", admin.secret)
        finally:
            server.should_exit = True
            await task
            sock.close()
            await engine.aclose()
            await memory.aclose()
            await store.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        await launched.close()
