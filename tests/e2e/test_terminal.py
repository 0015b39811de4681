"""The terminal client end to end: the real `carrier chat` process, and the REPL in-process."""

from __future__ import annotations

import io
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.clients.terminal import TerminalChat
from carrier.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"agent:\n  character_file: {ROOT / 'characters' / 'fish.yaml'}\n"
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'carrier.db'}\n{extra}",
        encoding="utf-8",
    )
    return config


def test_carrier_chat_process_answers_and_explains(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = (
        "\n".join(
            [
                "hello @Finnegan, how is the water?",
                "/why",
                "/as bob",
                "just chatting with alice here",
                "/why",
                "/rel",
                "/memory bob",
                "/persona",
                "/quit",
            ]
        )
        + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "carrier.cli.main", "chat", "--config", str(config)],
        input=script.encode() + b"",
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "Finnegan is here" in out
    assert "Finnegan:" in out
    assert "decision: answer: mention" in out
    assert "now speaking as bob" in out
    assert "decision: stay silent: not_addressed" in out
    assert "relationship with bob" in out
    assert "1 messages since" in out  # /memory bob
    assert "five-star" in out.lower() or "five star" in out.lower()  # /persona shows the lore
    assert "Traceback" not in done.stderr.decode()


def test_invalid_utf8_on_stdin_does_not_end_the_chat(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = b"hi fish \xff\xfe caf\xc3 there\n/why\n/quit\n"
    done = subprocess.run(
        [sys.executable, "-m", "carrier.cli.main", "chat", "--config", str(config)],
        input=script,
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "decision: answer: name_said" in done.stdout.decode()


async def test_a_locked_database_is_reported_and_the_chat_goes_on(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, "  busy_timeout_ms: 200\n"))
    store = await prepare_store(settings)
    output = io.StringIO()
    chat = TerminalChat(
        build_engine_for(settings, store, "carrier-bot", rng=random.Random(1)),
        Console(file=output, width=200),
    )
    try:
        assert await chat.handle_line("first message, fish") is not None
        locker = sqlite3.connect(tmp_path / "carrier.db", timeout=0.1)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            assert await chat.handle_line("second message while locked") is None
        finally:
            locker.rollback()
            locker.close()
        assert "could not record that message" in output.getvalue()
        assert "locked" in output.getvalue()
        third = await chat.handle_line("third message, fish?")
        assert third is not None and third.reply is not None
        user = await store.users.get("fish", "terminal:you")
        assert user is not None and user.message_count == 2  # nothing lost, nothing doubled
    finally:
        await store.close()
