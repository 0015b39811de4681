"""Schema migrations, run programmatically (``carrier db upgrade``; ``carrier run`` on start)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.store.database import Database, explain

_HERE = Path(__file__).parent


def alembic_config() -> Config:
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@asynccontextmanager
async def _explained(engine: AsyncEngine | Database) -> AsyncIterator[None]:
    """Driver and connection errors become one clear :class:`DatabaseError`."""
    try:
        yield
    except (DBAPIError, OSError) as exc:
        raise explain(exc, engine.url.render_as_string(hide_password=False)) from None


async def current_revision(engine: AsyncEngine | Database) -> str | None:
    """The schema revision the database is at (``None``: no schema yet)."""

    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with _explained(engine), engine.connect() as connection:
        return await connection.run_sync(_read)


async def upgrade(engine: AsyncEngine | Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; raises DatabaseError on a broken database."""
    cfg = alembic_config()

    def _run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with _explained(engine), engine.begin() as connection:
        await connection.run_sync(_run)


async def downgrade(engine: AsyncEngine | Database, revision: str) -> None:
    """Take the schema back to ``revision`` (``base``: no tables); DatabaseError on failure."""
    cfg = alembic_config()

    def _run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    async with _explained(engine), engine.begin() as connection:
        await connection.run_sync(_run)
