"""``carrier serve``: the HTTP API and web console."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from carrier.cli.common import ConfigOption, console, run, settings_from
from carrier.logs import configure_logging


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: api.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65_535, help="Port (default: api.port; 0: any free).")
    ] = None,
    memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Load long-term memory (the embedder).")
    ] = True,
) -> None:
    """Serve the REST and WebSocket API and the web console at /console/ (API keys:
    `carrier apikey create`)."""
    settings = settings_from(config)
    configure_logging(settings, console=True, log_file=Path("data/carrier.log"))

    async def main() -> None:
        from carrier.clients.http.server import serve as serve_api

        shown_host = host or settings.api.host
        shown_port = settings.api.port if port is None else port
        console.print(
            f"Carrier API on http://{shown_host}:{shown_port}/ (console: /console/, "
            "schema: /docs); Ctrl+C stops it.",
            highlight=False,
        )
        await serve_api(settings, host=host, port=port, with_memory=memory)

    _use_uvloop()
    run(main)


def _use_uvloop() -> None:
    """uvloop, when installed (uvicorn's "standard" extra brings it), runs the server's event
    loop noticeably cheaper than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
