"""``carrier memory``: long-term facts from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import Progress
from rich.table import Table

from carrier.bootstrap import open_memory, prepare_store
from carrier.cli.common import ConfigOption, UserFacingError, console, run, settings_from
from carrier.memory.api import Memory
from carrier.memory.archive import ArchiveHit, archive_model
from carrier.settings import Settings
from carrier.store.facts import Fact

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AgentOption = Annotated[
    str | None,
    typer.Option("--agent", "-a", help="Agent id (default: agent.id of the configuration)."),
]


def _with_memory(
    settings: Settings, agent: str | None, work: Callable[[Memory], Awaitable[T]]
) -> T:
    if agent is not None:
        settings = settings.model_copy(
            update={"agent": settings.agent.model_copy(update={"id": agent})}
        )

    async def main() -> T:
        from carrier.memory.embeddings.base import EmbeddingError
        from carrier.memory.vectors.base import VectorIndexUnavailable

        store = await prepare_store(settings)
        try:
            try:
                memory = await open_memory(settings, store)
            except (EmbeddingError, VectorIndexUnavailable) as exc:
                raise UserFacingError(str(exc)) from None
            try:
                return await work(memory)
            except VectorIndexUnavailable as exc:
                raise UserFacingError(str(exc)) from None
            finally:
                await memory.aclose()
        finally:
            await store.close()

    return run(main)


def _fact_json(fact: Fact) -> dict[str, object]:
    return {
        "id": fact.id,
        "user_id": fact.user_id,
        "guild_id": fact.guild_id,
        "fact": fact.fact,
        "category": fact.category,
        "first_mentioned": fact.first_mentioned.isoformat(),
        "last_mentioned": fact.last_mentioned.isoformat(),
        "reference_count": fact.reference_count,
        "superseded_by": fact.superseded_by,
    }


def _facts_table(facts: list[Fact], title: str) -> Table:
    table = Table("id", "user", "category", "fact", "refs", "last mentioned", title=title)
    for fact in facts:
        table.add_row(
            str(fact.id),
            fact.user_id,
            fact.category,
            fact.fact,
            str(fact.reference_count),
            f"{fact.last_mentioned:%Y-%m-%d %H:%M}",
        )
    return table


@app.command("list")
def list_facts(
    config: ConfigOption = None,
    agent: AgentOption = None,
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    history: Annotated[bool, typer.Option("--history", help="Include superseded facts.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List long-term facts (of one user with --user)."""

    async def work(memory: Memory) -> None:
        facts = await memory.store.facts.listing(
            memory.agent_id, user, include_history=history, limit=100_000
        )
        if as_json:
            console.print_json(json.dumps([_fact_json(f) for f in facts]))
        else:
            console.print(_facts_table(facts, f"{len(facts)} facts"))

    _with_memory(settings_from(config), agent, work)


@app.command("similar")
def similar(
    query: str,
    config: ConfigOption = None,
    agent: AgentOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=1000)] = 10,
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    as_json: JsonOption = False,
) -> None:
    """Facts most similar to QUERY (vector search)."""

    async def work(memory: Memory) -> None:
        hits = await memory.similar(query, k, user_id=user)
        if as_json:
            console.print_json(
                json.dumps([_fact_json(h.fact) | {"score": round(h.score, 4)} for h in hits])
            )
            return
        table = Table("score", "id", "user", "fact", title=f"similar to {query!r}")
        for hit in hits:
            table.add_row(f"{hit.score:.3f}", str(hit.fact.id), hit.fact.user_id, hit.fact.fact)
        console.print(table)

    _with_memory(settings_from(config), agent, work)


@app.command("search-archive")
def search_archive(
    query: str,
    guild: Annotated[
        str | None,
        typer.Option("--guild", "-g", help="The guild to search (omit for direct messages)."),
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option("--channel", "-c", help="Only this channel (required without --guild)."),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this author.")] = None,
    config: ConfigOption = None,
    agent: AgentOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Archived messages related to QUERY: full-text and vector search fused by rank."""
    if guild is None and channel is None:
        raise typer.BadParameter(
            "give --guild, or --channel for a direct-message conversation", param_hint="--guild"
        )

    async def work(memory: Memory) -> list[ArchiveHit]:
        return await memory.search_archive(
            query, guild_id=guild, channel_id=channel, user_id=user, k=k
        )

    hits = _with_memory(settings_from(config), agent, work)
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "archive_id": hit.archive_id,
                        "score": round(hit.score, 6),
                        "lexical_rank": hit.lexical_rank,
                        "vector_rank": hit.vector_rank,
                        "guild_id": hit.message.guild_id,
                        "channel_id": hit.message.channel_id,
                        "message_id": hit.message.message_id,
                        "author_id": hit.message.author_id,
                        "author_name": hit.message.author_name,
                        "text": hit.message.text,
                        "created_at": hit.message.created_at.isoformat(),
                    }
                    for hit in hits
                ]
            )
        )
        return
    table = Table("score", "words", "meaning", "when", "who", "text", title=f"archive: {query!r}")
    for hit in hits:
        table.add_row(
            f"{hit.score:.4f}",
            str(hit.lexical_rank or "-"),
            str(hit.vector_rank or "-"),
            f"{hit.message.created_at:%Y-%m-%d %H:%M}",
            hit.message.author_name,
            hit.message.text,
        )
    console.print(table)


@app.command("index-archive")
def index_archive(config: ConfigOption = None, agent: AgentOption = None) -> None:
    """Embed archived messages that have no vector of the configured model yet (the
    scheduled back-fill does this too; running it again is harmless)."""

    async def work(memory: Memory) -> int:
        with Progress(console=console) as progress:
            task = progress.add_task("embedding archived messages", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total or None)

            return await memory.index_archive(on_progress=advance)

    written = _with_memory(settings_from(config), agent, work)
    console.print(f"embedded {written} archived messages")


@app.command("clear")
def clear(
    config: ConfigOption = None,
    agent: AgentOption = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only this user's facts.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
) -> None:
    """Delete long-term facts (all of the agent's, or one user's)."""
    settings = settings_from(config)
    target = f"user {user}'s facts" if user else "every long-term fact"
    if not yes and not typer.confirm(f"Delete {target}?"):
        raise typer.Exit(1)

    async def work(memory: Memory) -> int:
        facts = await memory.store.facts.listing(
            memory.agent_id, user, include_history=True, limit=10_000_000
        )
        return await memory.delete_facts([f.id for f in facts])

    deleted = _with_memory(settings, agent, work)
    console.print(f"deleted {deleted} facts")


@app.command("init")
def init(
    config: ConfigOption = None,
    agent: AgentOption = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Write every vector again, archived messages included (after the vector "
            "store was lost or unavailable).",
        ),
    ] = False,
) -> None:
    """Prepare memory: migrate the database, load (and on first use build) the embedding
    model, and bring the vector index up to date."""

    async def work(memory: Memory) -> int:
        if rebuild:
            return await memory.rebuild_index()
        return await memory.sync_index() + await memory.index_archive()

    synced = _with_memory(settings_from(config), agent, work)
    console.print(f"memory ready; {synced} vectors written to the index")


@app.command("stats")
def stats(
    config: ConfigOption = None, agent: AgentOption = None, as_json: JsonOption = False
) -> None:
    """How much the bot remembers."""

    async def work(memory: Memory) -> dict[str, object]:
        store, agent_id = memory.store, memory.agent_id
        return {
            "agent": agent_id,
            "facts": await store.facts.count(agent_id, include_history=False),
            "facts_with_history": await store.facts.count(agent_id),
            "vectors": await memory.index.count(agent_id, memory.embedder.model),
            "embedding_model": memory.embedder.model,
            "short_term_messages": await store.messages.count(agent_id),
            "archived_messages": await store.messages.count(agent_id, archived=True),
            "archive_vectors": await memory.index.count(
                agent_id, archive_model(memory.embedder.model)
            ),
        }

    figures = _with_memory(settings_from(config), agent, work)
    if as_json:
        console.print_json(json.dumps(figures))
        return
    for key, value in figures.items():
        console.print(f"{key}: {value}")


@app.command("consolidate")
def consolidate(config: ConfigOption = None, agent: AgentOption = None) -> None:
    """Turn the short-term log into long-term facts and move it to the archive."""

    async def work(memory: Memory) -> object:
        return await memory.consolidate()

    report = _with_memory(settings_from(config), agent, work)
    console.print(report)


@app.command("export")
def export(
    file: Annotated[Path | None, typer.Argument(help="JSON lines file (default: stdout).")] = None,
    config: ConfigOption = None,
    agent: AgentOption = None,
) -> None:
    """Write every fact as JSON lines."""

    async def work(memory: Memory) -> list[str]:
        return await memory.export_lines()

    lines = _with_memory(settings_from(config), agent, work)
    text = "".join(line + "\n" for line in lines)
    if file is None:
        sys.stdout.write(text)
    else:
        file.write_text(text, encoding="utf-8")
        console.print(f"exported {len(lines)} facts to {file}")


@app.command("import")
def import_(file: Path, config: ConfigOption = None, agent: AgentOption = None) -> None:
    """Read facts from JSON lines written by `carrier memory export`."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserFacingError(f"cannot read {file}: {exc}") from None

    async def work(memory: Memory) -> int:
        try:
            return await memory.import_lines(lines)
        except ValueError as exc:
            raise UserFacingError(f"{file}: {exc}") from None

    count = _with_memory(settings_from(config), agent, work)
    console.print(f"imported {count} facts")


@app.command("reembed")
def reembed(config: ConfigOption = None, agent: AgentOption = None) -> None:
    """Give every fact a vector of the configured embedding model (after changing it)."""

    async def work(memory: Memory) -> tuple[int, int]:
        with Progress(console=console) as progress:
            task = progress.add_task("re-embedding facts", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total or None)

            facts = await memory.reembed(on_progress=advance)
            task = progress.add_task("embedding archived messages", total=None)
            archived = await memory.index_archive(on_progress=advance)
            await memory.finish_model_change()
            return facts, archived

    facts, archived = _with_memory(settings_from(config), agent, work)
    console.print(f"re-embedded {facts} facts and {archived} archived messages")
