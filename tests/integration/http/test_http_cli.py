"""`carrier apikey create|list|revoke` and `carrier serve` as an operator runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from carrier.cli.main import app

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'cli.db'}\n"
        f"agent:\n  id: fish\n  character_file: {ROOT / 'characters/fish.yaml'}\n",
        encoding="utf-8",
    )
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(config: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carrier.cli.main",
            "serve",
            "-c",
            str(config),
            "--port",
            str(port),
            "--no-memory",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0].decode(errors="replace")
            pytest.fail(f"carrier serve did not start:\n{output}")
        time.sleep(0.1)
    yield url
    process.terminate()
    output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode == 0, output


def test_keys_are_created_listed_and_revoked(config: Path, served: str) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["apikey", "create", "ops", "--scope", "chat", "--scope", "admin", "-c", str(config)]
    )
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith("carrier_") and "not shown again" in made.output
    expiring = runner.invoke(
        app, ["apikey", "create", "temp", "--expires-days", "3", "-c", str(config)]
    )
    assert expiring.exit_code == 0, expiring.output

    listed = runner.invoke(app, ["apikey", "list", "--json", "-c", str(config)])
    keys = json.loads(listed.output)
    assert [(k["name"], k["scopes"], k["status"]) for k in keys] == [
        ("ops", ["chat", "admin"], "active"),
        ("temp", ["chat"], "active"),
    ]
    assert keys[1]["expires_at"] is not None
    assert secret not in listed.output and secret.startswith(keys[0]["prefix"])

    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(served + "/api/v1/agents/fish/persona", headers=headers).status_code == 200

    revoked = runner.invoke(app, ["apikey", "revoke", "ops", "-c", str(config)])
    assert revoked.exit_code == 0 and "revoked 1" in revoked.output
    time.sleep(1.1)  # a revocation takes effect within api.key_cache_seconds (1 s)
    refused = httpx.get(served + "/api/v1/agents/fish/persona", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    again = runner.invoke(app, ["apikey", "revoke", "ops", "-c", str(config)])
    assert again.exit_code == 1 and "no active key" in again.output
    last_used = json.loads(
        runner.invoke(app, ["apikey", "list", "--json", "-c", str(config)]).output
    )
    assert last_used[0]["status"] == "revoked" and last_used[0]["last_used_at"] is not None


def test_bad_key_requests_are_refused_by_the_cli(config: Path) -> None:
    runner = CliRunner()
    unknown_scope = runner.invoke(
        app, ["apikey", "create", "x", "--scope", "root", "-c", str(config)]
    )
    assert unknown_scope.exit_code == 1 and "unknown scope 'root'" in unknown_scope.output
    runner.invoke(app, ["apikey", "create", "dup", "-c", str(config)])
    duplicate = runner.invoke(app, ["apikey", "create", "dup", "-c", str(config)])
    assert duplicate.exit_code == 1 and "exists" in duplicate.output


def test_serve_serves_the_console_and_the_schema(served: str) -> None:
    console = httpx.get(served + "/console/")
    assert console.status_code == 200 and "<title>Carrier console</title>" in console.text
    assert httpx.get(served + "/").headers["location"] == "/console/"
    schema = httpx.get(served + "/openapi.json").json()
    assert "/api/v1/agents/{agent_id}/channels/{channel_id}/messages" in schema["paths"]
