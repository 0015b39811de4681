"""``carrier train FILE --guild ID``: teach a guild's Markov chain a chat export."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from carrier.bootstrap import open_migrated_store
from carrier.cli.common import ConfigOption, UserFacingError, console, run, settings_from
from carrier.generation.chat_export import ChatExport, ExportFormatError
from carrier.generation.markov import MarkovGenerator
from carrier.settings import Settings
from carrier.store.store import Store


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What one import did."""

    learned: int
    too_short: int
    from_bots: int
    seconds: float


async def learn_export(
    store: Store,
    settings: Settings,
    export: ChatExport,
    guild_id: str,
    on_progress: Callable[[int], None] | None = None,
) -> TrainReport:
    """Learn every human message of ``export`` into the guild's chain of the configured agent.

    ``on_progress(learned_so_far)`` runs after each committed batch.  This is the whole of
    ``carrier train`` minus the terminal; the benchmark runs it too.
    """
    generator = MarkovGenerator(store.markov, settings.markov)
    bots = 0
    learned = 0

    def human_texts() -> Iterator[str]:
        nonlocal bots
        for message in export:
            if message.author_is_bot:
                bots += 1
            else:
                yield message.text

    def progressed(batch_learned: int, _batch_skipped: int) -> None:
        nonlocal learned
        learned += batch_learned
        if on_progress is not None:
            on_progress(learned)

    started = time.perf_counter()
    result = await generator.learn_many(
        settings.agent.id, guild_id, human_texts(), on_progress=progressed
    )
    return TrainReport(result.learned, result.skipped, bots, time.perf_counter() - started)


def train(
    file: Annotated[
        Path,
        typer.Argument(help="DiscordChatExporter JSON export, or plain text: one message a line."),
    ],
    guild: Annotated[str, typer.Option("--guild", help="The guild (server) id to train.")],
    config: ConfigOption = None,
) -> None:
    """Teach a guild's Markov chain a chat export (bot messages are skipped)."""
    settings = settings_from(config)
    if not guild.strip():
        raise typer.BadParameter("must not be empty", param_hint="--guild")

    async def _train() -> TrainReport:
        try:
            export = ChatExport(file)
        except ExportFormatError as exc:
            raise UserFacingError(str(exc)) from None
        store = await open_migrated_store(settings)
        try:
            with Progress(
                TextColumn("[bold]training[/bold] {task.fields[learned]:,} messages"),
                BarColumn(),
                DownloadColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("train", total=export.size or None, learned=0)

                def advance(learned: int) -> None:
                    progress.update(task, completed=export.bytes_read, learned=learned)

                report = await learn_export(store, settings, export, guild, advance)
                progress.update(task, completed=export.size, learned=report.learned)
            return report
        except ExportFormatError as exc:
            raise UserFacingError(f"{exc} (batches learned before this point were kept)") from None
        finally:
            await store.close()

    report = run(_train)
    console.print(
        f"learned {report.learned:,} messages into guild {guild} "
        f"(agent {settings.agent.id}) in {report.seconds:.1f} s; "
        f"skipped {report.from_bots:,} from bots and {report.too_short:,} under two words",
        highlight=False,
    )
