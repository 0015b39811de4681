"""``carrier db``: create and change the database schema through the Alembic migrations."""

from __future__ import annotations

from typing import Annotated

import typer
from alembic.util import CommandError

from carrier.bootstrap import build_engine
from carrier.cli.common import ConfigOption, UserFacingError, console, run, settings_from
from carrier.settings import Settings
from carrier.store import migrate
from carrier.store.database import sqlite_path

app = typer.Typer(
    help="Create, inspect and change the database schema (Alembic migrations).",
    no_args_is_help=True,
)


def _shown(revision: str | None) -> str:
    return revision or "empty"


async def _migrate(settings: Settings, target: str, *, down: bool) -> tuple[str | None, str | None]:
    engine = build_engine(settings)
    try:
        before = await migrate.current_revision(engine)
        try:
            if down:
                await migrate.downgrade(engine, target)
            else:
                await migrate.upgrade(engine, target)
        except CommandError as exc:
            raise UserFacingError(f"cannot migrate to {target!r}: {exc}") from None
        after = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    return before, after


@app.command()
def upgrade(
    config: ConfigOption = None,
    revision: Annotated[
        str, typer.Argument(help="Revision to upgrade to (default: the newest).")
    ] = "head",
) -> None:
    """Upgrade the database schema to the newest revision (safe to run again)."""
    settings = settings_from(config)
    before, after = run(lambda: _migrate(settings, revision, down=False))
    if before == after:
        console.print(f"database already at {_shown(after)}", highlight=False)
    else:
        console.print(f"database upgraded: {_shown(before)} -> {_shown(after)}", highlight=False)


@app.command()
def current(config: ConfigOption = None) -> None:
    """Show the revision the database is at and the newest one available."""
    settings = settings_from(config)
    url = settings.effective_database_url
    head = migrate.head_revision()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        # Asking must not create an empty database file as a side effect.
        console.print(f"current: none (no database at {path} yet)", highlight=False)
        console.print(f"head:    {_shown(head)}", highlight=False)
        return

    async def _read() -> str | None:
        engine = build_engine(settings)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    revision = run(_read)
    if revision == head:
        state = "up to date"
    elif revision is None:
        state = "no schema yet; run `carrier db upgrade`"
    else:
        state = "behind; run `carrier db upgrade`"
    console.print(f"current: {_shown(revision)} ({state})", highlight=False)
    console.print(f"head:    {_shown(head)}", highlight=False)


@app.command()
def downgrade(
    revision: Annotated[
        str, typer.Argument(help="Revision to go back to; 'base' removes every table.")
    ],
    config: ConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Take the schema back to REVISION. Tables added after it are dropped, with their data."""
    settings = settings_from(config)
    if not yes:
        typer.confirm(
            f"Downgrade the database to {revision}? Tables and columns added after it are "
            "dropped with their data",
            abort=True,
        )
    before, after = run(lambda: _migrate(settings, revision, down=True))
    if before == after:
        console.print(f"database already at {_shown(after)}", highlight=False)
    else:
        console.print(f"database downgraded: {_shown(before)} -> {_shown(after)}", highlight=False)
