"""``carrier instagram ...`` end to end: real FTP, web folder and Graph API stand-in."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from ig_support import (
    ACCOUNT_ID,
    CHARACTER_FILE,
    FTP_PASSWORD,
    FTP_USER,
    TOKEN,
    FtpTestServer,
    samples,
)
from typer.testing import CliRunner, Result

from carrier.cli.main import app
from carrier.testing.graph_api import FakeGraphAPI


class BackgroundServers:
    """The Graph API stand-in and the web folder on their own event loop in a thread, so
    the CLI can run ``asyncio.run`` in the test's thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.graph = FakeGraphAPI(account_id=ACCOUNT_ID, access_token=TOKEN)
        self.media_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> BackgroundServers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        await self.graph.start()
        app = web.Application()
        app.router.add_static("/media/", self.folder)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.media_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/media"

    async def _stop(self) -> None:
        await self.graph.stop()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
def servers(ftp_server: FtpTestServer) -> Iterator[BackgroundServers]:
    with BackgroundServers(ftp_server.root / "media") as running:
        yield running


@pytest.fixture
def cli_env(
    servers: BackgroundServers,
    ftp_server: FtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CARRIER_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    config = tmp_path / "config.yaml"
    config.write_text(
        f'database: {{url: "sqlite+aiosqlite:///{tmp_path / "carrier.db"}"}}\n'
        f'agent: {{id: fish, character_file: "{CHARACTER_FILE}"}}\n'
        "instagram:\n"
        f"  graph_api_url: {servers.graph.url}\n"
        "  ftp_folder: media\n"
        "  ftp_tls: false\n"
        "  poll_interval_seconds: 0.01\n"
        "  poll_timeout_seconds: 2\n"
        "  posts_per_24h: 1\n",
        encoding="utf-8",
    )
    credentials = {
        "INSTAGRAM_ACCOUNT_ID": ACCOUNT_ID,
        "INSTAGRAM_ACCESS_TOKEN": TOKEN,
        "FTP_SERVER": f"127.0.0.1:{ftp_server.port}",
        "FTP_USERNAME": FTP_USER,
        "FTP_PASSWORD": FTP_PASSWORD,
        "HTTP_SERVER": servers.media_url,
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    return config


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["instagram", *args, "--config", str(config)])


def flat(text: str) -> str:
    return " ".join(text.split())


def test_post_list_cancel_and_run_the_queue(
    cli_env: Path, servers: BackgroundServers, ftp_server: FtpTestServer, tmp_path: Path
) -> None:
    first = samples.jpeg(tmp_path / "first.jpg", seed=1)
    second = samples.jpeg(tmp_path / "second.jpg", seed=2)

    posted = invoke(cli_env, "post", str(first), "--caption", "Blub #fish")
    assert posted.exit_code == 0, posted.output
    media_id = servers.graph.published[0].id
    assert f"post #1: published as media {media_id}" in flat(posted.stdout)

    queued = invoke(cli_env, "post", str(second), "--caption", "Second")
    assert queued.exit_code == 0, queued.output
    assert "post #2 is queued: waiting for the publishing limit" in flat(queued.stdout)

    listing = invoke(cli_env, "queue")
    assert listing.exit_code == 0, listing.output
    assert "second.jpg" in listing.stdout and "first.jpg" not in listing.stdout
    everything = invoke(cli_env, "queue", "--all")
    assert "first.jpg" in everything.stdout and "published" in everything.stdout

    waiting = invoke(cli_env, "run-queue")
    assert waiting.exit_code == 0, waiting.output
    assert "waiting for the publishing limit: #2" in flat(waiting.stdout)

    cancelled = invoke(cli_env, "queue", "cancel", "2")
    assert cancelled.exit_code == 0, cancelled.output
    assert "Cancelled Instagram post #2." in cancelled.stdout
    refused = invoke(cli_env, "queue", "cancel", "1")
    assert refused.exit_code == 1
    assert "post #1 is published" in flat(refused.output)

    empty = invoke(cli_env, "run-queue")
    assert "Nothing to publish" in empty.stdout
    assert len(servers.graph.published) == 1


def test_a_generated_caption_is_published(
    cli_env: Path, servers: BackgroundServers, tmp_path: Path
) -> None:
    photo = samples.jpeg(tmp_path / "pond.jpg")
    result = invoke(cli_env, "post", str(photo), "--generate-caption", "--about", "the pond")
    assert result.exit_code == 0, result.output
    (media,) = servers.graph.published
    assert media.caption.strip()
    assert f"caption: {media.caption.split()[0]}" in flat(result.stdout)


@pytest.mark.parametrize("missing", [["INSTAGRAM_ACCESS_TOKEN"], ["FTP_PASSWORD", "HTTP_SERVER"]])
def test_missing_credentials_are_named_never_shown(
    cli_env: Path,
    ftp_server: FtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    missing: list[str],
) -> None:
    values = {
        name: os.environ[name]
        for name in os.environ
        if name.startswith(("INSTAGRAM", "FTP", "HTTP"))
    }
    for name in missing:
        monkeypatch.delenv(name)
    result = invoke(cli_env, "post", str(samples.jpeg(tmp_path / "a.jpg")), "--caption", "x")
    assert result.exit_code == 1
    output = flat(result.output)
    for name in missing:
        assert name in output
    for value in values.values():
        assert value not in output
    assert ftp_server.files() == []


def test_a_bad_file_is_refused_before_any_upload(
    cli_env: Path, servers: BackgroundServers, ftp_server: FtpTestServer, tmp_path: Path
) -> None:
    result = invoke(cli_env, "post", str(samples.png(tmp_path / "fake.jpg")), "--caption", "x")
    assert result.exit_code == 1
    assert "is a PNG image, which Instagram cannot publish" in flat(result.output)
    assert ftp_server.files() == [] and servers.graph.requests == []


def test_caption_and_generated_caption_exclude_each_other(cli_env: Path, tmp_path: Path) -> None:
    photo = samples.jpeg(tmp_path / "a.jpg")
    result = invoke(cli_env, "post", str(photo), "--caption", "x", "--generate-caption")
    assert result.exit_code == 2
    assert "not both" in result.output
