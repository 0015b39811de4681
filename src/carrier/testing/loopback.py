"""The base of Carrier's stand-in servers: an aiohttp application served over real HTTP on
127.0.0.1 (needs the ``test`` extra: aiohttp).

A subclass builds its routes in :meth:`LoopbackServer._application`; this class starts and
stops it, as ``async with server`` or ``await server.start()`` / ``await server.stop()``.
``port=0`` picks a free port; :attr:`LoopbackServer.url` is where it listens.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aiohttp import web


class LoopbackServer:
    """An aiohttp application on ``host``:``port``.

    ``backlog`` is the listen queue (aiohttp's default; raise it for tests that open hundreds
    of connections at once); ``description`` names the server in the error raised when its
    :attr:`url` is asked for before it started.
    """

    def __init__(self, *, host: str, port: int, description: str, backlog: int = 128) -> None:
        self._host = host
        self._port = port
        self._description = description
        self._backlog = backlog
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    def _application(self) -> web.Application:
        """The application to serve, with its routes."""
        raise NotImplementedError

    async def start(self) -> Self:
        app = self._application()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, backlog=self._backlog)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError(f"{self._description} is not started")
        return f"http://{self._host}:{self._bound_port}"


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers: a stalled
    endpoint, for timeouts.  ``async with SilentServer() as silent``; :attr:`url` is
    ``http://127.0.0.1:PORT``, :attr:`connections` how many were accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the silent server is not started")
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)  # held open, read from and written to never

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
