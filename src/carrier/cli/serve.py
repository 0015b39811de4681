"""``carrier serve``: the HTTP API and web console."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from carrier.cli.common import ConfigOption, console, errors, run, settings_from
from carrier.logs import configure_logging
from carrier.settings import Settings


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: api.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65_535, help="Port (default: api.port; 0: any free).")
    ] = None,
    memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Load long-term memory (the embedder).")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving one port (SO_REUSEPORT); more than 1 needs REDIS_URL, so "
            "that rate limits and WebSocket broadcasts are shared.",
        ),
    ] = 1,
    reuse_port: Annotated[
        bool, typer.Option("--reuse-port", hidden=True, help="Run as one of --workers.")
    ] = False,
) -> None:
    """Serve the REST and WebSocket API and the web console at /console/ (API keys:
    `carrier apikey create`)."""
    settings = settings_from(config)
    shown_host = host or settings.api.host
    shown_port = settings.api.port if port is None else port
    if workers > 1:
        _serve_workers(settings, config, shown_host, shown_port, memory, workers)
        return
    configure_logging(settings, console=True, log_file=Path("data/carrier.log"))

    async def main() -> None:
        from carrier.clients.http.server import serve as serve_api

        if not reuse_port:
            console.print(
                f"Carrier API on http://{shown_host}:{shown_port}/ (console: /console/, "
                "schema: /docs); Ctrl+C stops it.",
                highlight=False,
            )
        await serve_api(settings, host=host, port=port, with_memory=memory, reuse_port=reuse_port)

    _use_uvloop()
    run(main)


def _serve_workers(
    settings: Settings, config: Path | None, host: str, port: int, memory: bool, workers: int
) -> None:
    from carrier.clients.http.workers import reserve_port, run_workers, workers_problem

    problem = workers_problem(settings, workers)
    if problem is not None:
        errors.print(f"[red]error:[/red] {problem}", markup=True, highlight=False)
        raise typer.Exit(2)
    try:
        reserved = reserve_port(host, port)
    except OSError as exc:
        errors.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    command = [sys.executable, "-m", "carrier.cli.main", "serve", "--host", host]
    command += ["--port", "{port}", "--memory" if memory else "--no-memory", "--reuse-port"]
    if config is not None:
        command += ["--config", str(config)]
    console.print(
        f"Carrier API on http://{host}:{reserved.getsockname()[1]}/ in {workers} worker "
        "processes (console: /console/, schema: /docs); Ctrl+C stops them.",
        highlight=False,
    )
    status = run_workers(command, workers, reserved)
    if status:
        raise typer.Exit(status)


def _use_uvloop() -> None:
    """uvloop, when installed (uvicorn's "standard" extra brings it), runs the server's event
    loop noticeably cheaper than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
