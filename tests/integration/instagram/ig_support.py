"""Helpers of the Instagram integration tests: constants, sample media, a movable clock, the
loopback FTP server, settings for the stand-ins."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carrier.clients.instagram.client import InstagramClient
from carrier.settings import InstagramSettings
from carrier.testing.graph_api import FakeGraphAPI

# pyftpdlib runs on the standard library's asyncore/asynchat on Python 3.11, whose import
# warns that they are deprecated; the warning is about pyftpdlib's internals, not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler
    from pyftpdlib.servers import FTPServer

REPO_ROOT = Path(__file__).resolve().parents[3]
CHARACTER_FILE = REPO_ROOT / "characters" / "fish.yaml"
TOKEN = "EAAG-integration-token-SECRET-7c1e"
FTP_USER = "carrier"
FTP_PASSWORD = "ftp-pass-SECRET-93ab"
ACCOUNT_ID = "17841400000000001"


ClientFactory = Callable[..., InstagramClient]
"""``make_client(llm=None, **instagram_settings)`` (the fixture)."""


def _load_media_samples() -> Any:
    # One set of sample builders for the unit and integration tests (no tests package).
    path = REPO_ROOT / "tests" / "unit" / "instagram" / "media_samples.py"
    spec = importlib.util.spec_from_file_location("instagram_media_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


samples = _load_media_samples()


class FakeClock:
    """Now, as the tests decide (shared by the client and the Graph API stand-in)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class FtpTestServer:
    """pyftpdlib on 127.0.0.1 in a thread.  ``drop_uploads = n`` drops the next n uploads
    after their first chunk of data (data and control connection closed)."""

    root: Path
    drop_uploads: int = 0
    dropped: int = 0
    received: list[str] = field(default_factory=list)
    logins: int = 0
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FtpTestServer:
        state = self

        class DroppingDTPHandler(DTPHandler):  # type: ignore[misc]
            def handle_read(self) -> None:
                super().handle_read()
                if (
                    state.drop_uploads > 0
                    and self.receive
                    and self.tot_bytes_received > 0
                    and not self.transfer_finished
                ):
                    state.drop_uploads -= 1
                    state.dropped += 1
                    command = self.cmd_channel
                    self.close()
                    command.close()

            # The base class aliases handle_read_event to its own handle_read.
            handle_read_event = handle_read

        authorizer = DummyAuthorizer()
        authorizer.add_user(FTP_USER, FTP_PASSWORD, str(self.root), perm="elradfmwMT")

        class Handler(FTPHandler):  # type: ignore[misc]
            def on_login(self, username: str) -> None:
                state.logins += 1

            def on_file_received(self, file: str) -> None:
                state.received.append(Path(file).name)

        Handler.authorizer = authorizer
        Handler.dtp_handler = DroppingDTPHandler
        Handler.banner = "Carrier test FTP"
        Handler.auth_failed_timeout = 0.05
        server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = int(server.address[1])

        def serve() -> None:
            while not self._stop.is_set():
                server.serve_forever(timeout=0.01, blocking=False, handle_exit=False)
            server.close_all()

        self._thread = threading.Thread(target=serve, name="test-ftpd", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def files(self, folder: str = "media") -> list[str]:
        return sorted(p.name for p in (self.root / folder).iterdir())


def instagram_settings(graph: FakeGraphAPI, **overrides: Any) -> InstagramSettings:
    values: dict[str, Any] = {
        "graph_api_url": graph.url,
        "ftp_folder": "media",
        "ftp_tls": False,
        "ftp_timeout_seconds": 5.0,
        "upload_attempts": 3,
        "poll_interval_seconds": 0.01,
        "poll_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return InstagramSettings(**values)


async def settle() -> None:
    """Let the FTP thread finish its bookkeeping (callbacks run after the reply is sent)."""
    await asyncio.sleep(0.05)
