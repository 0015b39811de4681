"""`carrier run` with the HTTP API enabled and no Discord token: the API serves, with the
daily jobs beside it, and Ctrl+C stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from carrier.cli.main import app
from carrier.engine.initiative import STATUS_KEY

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_carrier_run_serves_the_api_when_enabled(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'run.db'}\n"
        f"agent:\n  id: fish\n  character_file: {ROOT / 'characters/fish.yaml'}\n"
        f"api:\n  enabled: true\n  port: {port}\n"
        # The daily jobs are due from midnight on, so they run as soon as it starts.
        "discord:\n  consolidation_hour: 0\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "REDIS_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "carrier.cli.main", "run", "-c", str(config)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**env, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the first start builds the embedding model
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.communicate()[0].decode(errors="replace")
                pytest.fail(f"carrier run did not serve the API:\n{output}")
            time.sleep(0.2)

        created = CliRunner().invoke(
            app, ["apikey", "create", "ops", "--scope", "chat", "-c", str(config)]
        )
        assert created.exit_code == 0, created.output
        key = next(w for w in created.output.split() if len(w) > 30)
        answer = httpx.post(
            url + "/api/v1/agents/fish/channels/general/messages",
            headers={"Authorization": f"Bearer {key}"},
            json={"author_id": "u1", "author_name": "Ann", "text": "fish, are you there?"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["reply"]["text"]
        assert body["decision"]["respond"] is True

        # The daily consolidation ran (claimed once) and set a status text.
        with sqlite3.connect(tmp_path / "run.db") as db:
            while True:
                claims = db.execute(
                    "SELECT name FROM job_locks WHERE name LIKE 'daily:fish:%'"
                ).fetchall()
                status = db.execute(
                    "SELECT value FROM global_state WHERE agent_id = 'fish' AND key = ?",
                    (STATUS_KEY,),
                ).fetchall()
                if claims and status:
                    break
                assert time.monotonic() < deadline, "the daily jobs did not run"
                time.sleep(0.2)
        assert len(claims) == 1 and status[0][0]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 0, output
    assert "Carrier API on" in output
