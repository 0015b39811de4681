"""``serve()`` as ``carrier run`` uses it beside another client: no signal handlers of its
own, stopped by cancelling its task, and then really stopped."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import httpx
import pytest
from api_support import make_settings

from carrier.clients.http.server import serve


async def test_serve_stops_cleanly_when_cancelled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(serve(settings, port=port, with_memory=False, handle_signals=False))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(200):
            try:
                response = await client.get("/readyz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        assert response.status_code == 200
        assert signal.getsignal(signal.SIGTERM) is before  # left to the other client
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz", timeout=2)
