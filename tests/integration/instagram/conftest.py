"""The Instagram poster's outside world, for real, on loopback: an FTP server (pyftpdlib, in
a thread, able to drop a connection mid-upload), an explicit FTPS server on the same folder
with a certificate made for the test, a web server that serves the FTP folder (HTTP_SERVER),
and the Graph API stand-in; plus a clock the tests can move."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from ig_support import (
    ACCOUNT_ID,
    CHARACTER_FILE,
    FTP_PASSWORD,
    FTP_USER,
    TOKEN,
    ClientFactory,
    FakeClock,
    FtpTestServer,
    TlsFiles,
    instagram_settings,
    make_tls_files,
)

from carrier.bootstrap import build_instagram_client
from carrier.clients.instagram.client import InstagramClient
from carrier.generation.responder import Generator
from carrier.settings import AgentSettings, Settings
from carrier.store.store import Store
from carrier.testing.graph_api import FakeGraphAPI


@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[FtpTestServer]:
    root = tmp_path / "ftp"
    (root / "media").mkdir(parents=True)
    server = FtpTestServer(root).start()
    yield server
    server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A private CA and a server certificate it signed for 127.0.0.1."""
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def ftps_server(ftp_server: FtpTestServer, tls_files: TlsFiles) -> Iterator[FtpTestServer]:
    """Explicit FTPS (AUTH TLS, TLS required for login and data) serving the same folder as
    ``ftp_server``, so HTTP_SERVER serves what it receives."""
    server = FtpTestServer(ftp_server.root, tls=tls_files).start()
    yield server
    server.stop()


@pytest.fixture
async def media_http(ftp_server: FtpTestServer) -> AsyncIterator[str]:
    """HTTP_SERVER: serves the FTP folder ``media`` on 127.0.0.1."""
    app = web.Application()
    app.router.add_static("/media/", ftp_server.root / "media")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    yield f"http://127.0.0.1:{port}/media"
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def graph(clock: FakeClock) -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI(account_id=ACCOUNT_ID, access_token=TOKEN, clock=clock) as running:
        yield running


@pytest.fixture
def environ(ftp_server: FtpTestServer, media_http: str) -> dict[str, str]:
    return {
        "INSTAGRAM_ACCOUNT_ID": ACCOUNT_ID,
        "INSTAGRAM_ACCESS_TOKEN": TOKEN,
        "FTP_SERVER": f"127.0.0.1:{ftp_server.port}",
        "FTP_USERNAME": FTP_USER,
        "FTP_PASSWORD": FTP_PASSWORD,
        "HTTP_SERVER": media_http,
    }


@pytest.fixture
async def make_client(
    store: Store,
    graph: FakeGraphAPI,
    environ: dict[str, str],
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ClientFactory]:
    """``make_client(llm=None, ssl_context=None, **instagram_settings)``: an InstagramClient
    wired as in production."""
    monkeypatch.chdir(tmp_path)  # no config.yaml or .env of the developer's
    made: list[InstagramClient] = []

    def make(
        llm: Generator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        **overrides: Any,
    ) -> InstagramClient:
        settings = Settings(
            agent=AgentSettings(id="fish", character_file=CHARACTER_FILE),
            instagram=instagram_settings(graph, **overrides),
        )
        client = build_instagram_client(
            settings, store, environ=environ, clock=clock, llm=llm, ssl_context=ssl_context
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "to-post"
    folder.mkdir()
    return folder
