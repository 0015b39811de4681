"""``carrier apikey ...``: API keys for the HTTP API (shown once, stored only as a hash)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from carrier.cli.common import (
    ConfigOption,
    UserFacingError,
    console,
    run,
    settings_from,
    with_store,
)
from carrier.store.apikeys import SCOPES, ApiKey
from carrier.store.store import Store

app = typer.Typer(
    help="API keys for the HTTP API and web console: create, list, revoke.",
    no_args_is_help=True,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _as_json(key: ApiKey, now: datetime) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "status": key.status(now),
        "created_at": _iso(key.created_at),
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "last_used_at": _iso(key.last_used_at),
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to tell the key apart, e.g. grafana.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help=f"Repeatable: {', '.join(SCOPES)} (default: chat)."),
    ] = None,
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, max=36_500, help="Expire after N days.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once: it is stored only as a hash and cannot be shown again."""
    settings = settings_from(config)
    now = datetime.now(UTC)
    expires = now + timedelta(days=expires_days) if expires_days else None

    async def work(store: Store) -> tuple[ApiKey, str]:
        try:
            created = await store.api_keys.create(
                settings.agent.id, name, scope or ["chat"], expires_at=expires, now=now
            )
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
        return created.key, created.secret

    key, secret = run(lambda: with_store(settings, work))
    console.print(
        f"created key [bold]{key.name}[/bold] (id {key.id}, scopes {' '.join(key.scopes)}"
        + (f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "")
        + ")",
        highlight=False,
    )
    console.print("Store it now; it is not shown again:", highlight=False)
    typer.echo(secret)


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the agent's keys (prefix, scopes, status); never the keys themselves."""
    settings = settings_from(config)

    async def work(store: Store) -> list[ApiKey]:
        return await store.api_keys.list(settings.agent.id)

    keys = run(lambda: with_store(settings, work))
    now = datetime.now(UTC)
    if as_json:
        typer.echo(json.dumps([_as_json(k, now) for k in keys], indent=2))
        return
    table = Table("id", "name", "prefix", "scopes", "status", "created", "expires", "last used")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix + "…",
            " ".join(k.scopes),
            k.status(now),
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "never",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id or name.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key by id or name; requests with it are refused from then on."""
    settings = settings_from(config)

    async def work(store: Store) -> int:
        count = await store.api_keys.revoke(settings.agent.id, key)
        if not count:
            raise UserFacingError(
                f"no active key with id or name {key!r}; see `carrier apikey list`"
            )
        return count

    count = run(lambda: with_store(settings, work))
    console.print(f"revoked {count} key(s) matching {key!r}", highlight=False)
