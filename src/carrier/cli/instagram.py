"""``carrier instagram ...``: post media, list and cancel the queue, run the queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from carrier.bootstrap import build_instagram_client
from carrier.cli.common import (
    ConfigOption,
    UserFacingError,
    console,
    errors,
    run,
    settings_from,
    with_store,
)
from carrier.clients.instagram.client import InstagramClient, PostOutcome
from carrier.clients.instagram.graph import GraphError
from carrier.clients.instagram.queue import QueueReport
from carrier.clients.instagram.validation import MediaRejected
from carrier.settings import Settings
from carrier.store.instagram import OPEN_STATUSES, PostRecord
from carrier.store.store import Store

T = TypeVar("T")

app = typer.Typer(
    help="Post media to Instagram (FTP upload + Graph API), and manage the posting queue.",
    no_args_is_help=True,
)
queue_app = typer.Typer(help="List the posts waiting to be published, or cancel one.")
app.add_typer(queue_app, name="queue")


async def _with_client(settings: Settings, work: Callable[[InstagramClient], Awaitable[T]]) -> T:
    async def on_store(store: Store) -> T:
        client = build_instagram_client(settings, store)
        try:
            return await work(client)
        except (MediaRejected, GraphError) as exc:
            raise UserFacingError(str(exc)) from None
        finally:
            await client.aclose()

    # The persona is imported on first use: a generated caption speaks with its voice.
    return await with_store(settings, on_store, persona=True)


@app.command("post")
def post(
    file: Annotated[Path, typer.Argument(help="A JPEG image, or an MP4/MOV video (a reel).")],
    caption: Annotated[
        str | None, typer.Option("--caption", help="The caption to publish with it.")
    ] = None,
    generate_caption: Annotated[
        bool,
        typer.Option(
            "--generate-caption",
            help="Write the caption in the persona's voice (LLM when configured, else Markov).",
        ),
    ] = False,
    about: Annotated[
        str, typer.Option("--about", help="With --generate-caption: what the media shows.")
    ] = "",
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            help="Idempotency key; the same key is never posted twice (default: derived from "
            "the file, the caption and the agent).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Publish FILE on Instagram now, or queue it when the 24-hour publishing limit is reached.

    The file and caption are checked against Instagram's limits before anything is uploaded.
    Running the same command again never publishes twice: it reports the earlier post, or
    finishes it if it did not complete.
    """
    if caption is not None and generate_caption:
        raise _usage("give --caption or --generate-caption, not both")
    settings = settings_from(config)

    async def work(client: InstagramClient) -> PostOutcome:
        return await client.post(
            file,
            caption=caption,
            generate_caption=generate_caption,
            about=about,
            request_id=request_id,
        )

    outcome = run(lambda: _with_client(settings, work))
    _say(outcome.message)
    if outcome.post.caption:
        _say(f"caption: {outcome.post.caption}")
    if outcome.post.status == "failed":
        raise typer.Exit(1)


@queue_app.callback(invoke_without_command=True)
def queue(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Also published, failed and cancelled posts.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """List the posts that wait to be published (oldest first)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(config)
    agent_id = settings.agent.id
    statuses = None if show_all else OPEN_STATUSES

    async def work(store: Store) -> list[PostRecord]:
        return await store.instagram.list_posts(agent_id, statuses)

    posts = run(lambda: with_store(settings, work))
    if not posts:
        _say("No Instagram posts waiting." if not show_all else "No Instagram posts yet.")
        return
    table = Table(title=f"Instagram posts of agent {agent_id}")
    for column in ("id", "status", "kind", "file", "caption", "created (UTC)", "note"):
        table.add_column(column, overflow="fold")
    for item in posts:
        note = item.error or ""
        if item.status == "published":
            note = f"media {item.media_id or '?'} at {item.published_at:%Y-%m-%d %H:%M}"
        elif item.not_before is not None:
            note = f"next try after {item.not_before:%Y-%m-%d %H:%M}; {note}".rstrip("; ")
        table.add_row(
            str(item.id),
            item.status,
            item.media_kind,
            escape(Path(item.local_path).name),
            escape(_short(item.caption, 60)),
            f"{item.created_at:%Y-%m-%d %H:%M}",
            escape(note),
        )
    console.print(table)


@queue_app.command("cancel")
def cancel(
    post_id: Annotated[int, typer.Argument(metavar="ID", help="The post's id (see queue).")],
    config: ConfigOption = None,
) -> None:
    """Cancel a queued post (it will not be published)."""
    settings = settings_from(config)
    agent_id = settings.agent.id

    async def work(store: Store) -> None:
        if await store.instagram.cancel(agent_id, post_id, now=_now()):
            return
        existing = await store.instagram.get(agent_id, post_id)
        if existing is None:
            raise UserFacingError(f"agent {agent_id!r} has no Instagram post #{post_id}")
        raise UserFacingError(
            f"post #{post_id} is {existing.status}; only queued or failed posts can be cancelled"
        )

    run(lambda: with_store(settings, work))
    _say(f"Cancelled Instagram post #{post_id}.")


@app.command("run-queue")
def run_queue(config: ConfigOption = None) -> None:
    """Publish the queued posts that the 24-hour publishing limit allows now."""
    settings = settings_from(config)

    async def work(client: InstagramClient) -> QueueReport:
        return await client.run_queue()

    report = run(lambda: _with_client(settings, work))
    if not report.results and not report.waiting:
        _say("Nothing to publish: the queue is empty.")
        return
    for result in report.results:
        _say(f"post #{result.post.id}: {result.post.status} — {result.message}")
    if report.waiting:
        ids = ", ".join(f"#{p.id}" for p in report.waiting)
        when = ""
        if report.allowance is not None and report.allowance.next_slot is not None:
            when = f"; the next slot opens at {report.allowance.next_slot:%Y-%m-%d %H:%M} UTC"
        _say(f"waiting for the publishing limit: {ids}{when}")
    if report.stopped:
        _say(f"stopped early: {report.stopped}")
    if report.failed:
        raise typer.Exit(1)


def _now() -> datetime:
    return datetime.now(UTC)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _usage(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(2)
