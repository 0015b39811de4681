"""What every command shares: loading settings, opening the store, running async code,
clean error exits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from carrier.bootstrap import open_migrated_store, prepare_store
from carrier.settings import ConfigError, Settings, load_settings
from carrier.store.database import DatabaseError
from carrier.store.store import Store

T = TypeVar("T")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file (default: ./config.yaml)."),
]


def settings_from(config: Path | None) -> Settings:
    """Load settings or exit with the validation message (status 2)."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


async def with_store(
    settings: Settings, work: Callable[[Store], Awaitable[T]], *, persona: bool = False
) -> T:
    """Run ``work`` on the migrated store, closed afterwards.  ``persona``: also import the
    configured persona when the store has none yet (see :func:`prepare_store`)."""
    store = await (prepare_store(settings) if persona else open_migrated_store(settings))
    try:
        return await work(store)
    finally:
        await store.close()


def run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run async command code; known failures become one clear line and status 1."""

    async def _main() -> T:
        return await coro_factory()

    try:
        return asyncio.run(_main())
    except (DatabaseError, ConfigError, UserFacingError) as exc:
        errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None


class UserFacingError(Exception):
    """A command failed for a reason the operator can fix; the message says how."""
