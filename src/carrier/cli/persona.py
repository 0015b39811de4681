"""``carrier persona ...``: import and export character files, list and edit the live persona."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from carrier.cli.common import (
    ConfigOption,
    UserFacingError,
    console,
    errors,
    run,
    settings_from,
    with_store,
)
from carrier.persona.character import (
    Character,
    CharacterError,
    character_to_yaml,
    dump_character,
    read_character,
)
from carrier.persona.service import (
    add_item,
    character_items,
    edit_item,
    export_character,
    import_character,
)
from carrier.settings import Settings
from carrier.store.persona import PERSONA_KINDS
from carrier.store.store import Store

app = typer.Typer(
    help="The bot's persona: import or export a character file, list and edit its items live.",
    no_args_is_help=True,
)

_PLURALS = {
    "nickname": "nicknames",
    "trait": "traits",
    "lore": "lore items",
    "fact": "facts & quirks",
    "bio": "bio lines",
    "topic": "topics",
    "style": "style lines",
    "example": "example conversations",
    "post_example": "post examples",
}


def _summary(character: Character) -> str:
    counts = Counter(kind for kind, _text in character_items(character))
    parts = [f"{counts[kind]} {_PLURALS[kind]}" for kind in PERSONA_KINDS if counts[kind]]
    return ", ".join(parts) or "no items"


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Carrier YAML or ElizaOS JSON character file.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Replace the stored persona without asking.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Replace the stored persona with the one in FILE.

    The file is checked completely before anything is written; if it is wrong, or the import
    fails, the persona already stored stays as it was.
    """
    settings = settings_from(config)
    agent_id = settings.agent.id
    try:
        loaded = read_character(file)
    except CharacterError as exc:
        raise _fail(str(exc)) from None
    character = loaded.character

    async def work(store: Store) -> int:
        existing = await store.persona.count(agent_id)
        if existing and not yes:
            current = await store.agents.name(agent_id) or agent_id
            if not typer.confirm(
                f"Replace the persona of agent {agent_id!r} ({current}, {existing} items) "
                f"with {character.name} from {file}?"
            ):
                raise typer.Abort()
        return await import_character(store, agent_id, character)

    count = run(lambda: with_store(settings, work))
    kind = "ElizaOS character" if loaded.format == "eliza" else "character file"
    console.print(
        f"Imported {character.name} into agent {agent_id!r} from {kind} {file}: {count} items "
        f"({_summary(character)}).",
        markup=False,
        highlight=False,
    )
    if loaded.ignored_keys:
        console.print(
            "Ignored ElizaOS keys Carrier does not use: " + ", ".join(loaded.ignored_keys),
            markup=False,
            highlight=False,
        )


@app.command("export")
def export(
    file: Annotated[
        Path | None,
        typer.Argument(help=".yaml/.yml (Carrier) or .json (ElizaOS); stdout YAML if omitted."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite FILE if it exists.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Write the stored persona out as a character file."""
    settings = settings_from(config)
    agent_id = settings.agent.id
    if file is not None and file.exists() and not force:
        raise _fail(f"{file} already exists; pass --force to overwrite it")

    async def work(store: Store) -> Character:
        if not await store.persona.count(agent_id):
            raise UserFacingError(_no_persona(agent_id, settings))
        return await export_character(store, agent_id)

    character = run(lambda: with_store(settings, work))
    if file is None:
        typer.echo(character_to_yaml(character), nl=False)
        return
    try:
        dump_character(character, file)
    except CharacterError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"Exported {character.name} ({_summary(character)}) to {file}.",
        markup=False,
        highlight=False,
    )


@app.command("show")
def show(
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Only items of this kind.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List the stored persona items with their ids."""
    settings = settings_from(config)
    agent_id = settings.agent.id
    if kind is not None:
        _check_kind(kind)

    async def work(store: Store) -> tuple[str, list[tuple[int, str, str]]]:
        name = await store.agents.name(agent_id) or agent_id
        items = await store.persona.items(agent_id, kind)
        return name, [(item.id, item.kind, item.text) for item in items]

    name, rows = run(lambda: with_store(settings, work))
    if not rows:
        if kind is not None:
            console.print(f"No {kind} items stored for agent {agent_id!r}.", markup=False)
        else:
            console.print(_no_persona(agent_id, settings), markup=False, highlight=False)
        return
    table = Table(title=f"Persona of {name} (agent {agent_id})")
    table.add_column("id", justify="right", style="cyan")
    table.add_column("kind", style="magenta")
    table.add_column("text", overflow="fold")
    for item_id, item_kind, text in rows:
        table.add_row(str(item_id), item_kind, text)
    console.print(table)


@app.command("add")
def add(
    kind: Annotated[str, typer.Argument(help="One of: " + ", ".join(PERSONA_KINDS) + ".")],
    text: Annotated[str, typer.Argument(help="The item's text.")],
    config: ConfigOption = None,
) -> None:
    """Add one item to the live persona; the bot uses it from its next reply on.

    A style line may start with "all:", "chat:" or "post:".  An example is a JSON list of
    {"user": ..., "text": ...} messages, or plain text for one line spoken by the bot.
    """
    settings = settings_from(config)
    agent_id = settings.agent.id
    _check_kind(kind)

    async def work(store: Store) -> tuple[int, str]:
        if not await store.persona.count(agent_id):
            raise UserFacingError(_no_persona(agent_id, settings))
        try:
            item = await add_item(store, agent_id, kind, text)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
        return item.id, item.text

    item_id, stored = run(lambda: with_store(settings, work))
    console.print(f"Added {kind} #{item_id}: {stored}", markup=False, highlight=False)


@app.command("edit")
def edit(
    item_id: Annotated[int, typer.Argument(metavar="ID", help="The item's id (see show).")],
    text: Annotated[str, typer.Argument(help="The new text.")],
    config: ConfigOption = None,
) -> None:
    """Change the text of one persona item."""
    settings = settings_from(config)
    agent_id = settings.agent.id

    async def work(store: Store) -> str:
        try:
            item = await edit_item(store, agent_id, item_id, text)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
        if item is None:
            raise UserFacingError(f"agent {agent_id!r} has no persona item #{item_id}")
        return item.kind

    kind = run(lambda: with_store(settings, work))
    console.print(f"Updated {kind} #{item_id}.", markup=False)


@app.command("remove")
def remove(
    item_id: Annotated[int, typer.Argument(metavar="ID", help="The item's id (see show).")],
    config: ConfigOption = None,
) -> None:
    """Remove one item from the live persona."""
    settings = settings_from(config)
    agent_id = settings.agent.id

    async def work(store: Store) -> None:
        if not await store.persona.remove(agent_id, item_id):
            raise UserFacingError(f"agent {agent_id!r} has no persona item #{item_id}")

    run(lambda: with_store(settings, work))
    console.print(f"Removed persona item #{item_id}.", markup=False)


def _check_kind(kind: str) -> None:
    if kind not in PERSONA_KINDS:
        raise _fail(f"unknown kind {kind!r}; expected one of: {', '.join(PERSONA_KINDS)}")


def _no_persona(agent_id: str, settings: Settings) -> str:
    return (
        f"no persona stored for agent {agent_id!r} yet; import one with "
        f"`carrier persona import {settings.agent.character_file}` "
        "(the bot also does this by itself on first start)"
    )


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(1)
