"""``carrier stats``: what the bot has seen and what its LLM calls cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from carrier.bootstrap import open_migrated_store
from carrier.cli.common import ConfigOption, console, run, settings_from


def stats(
    config: ConfigOption = None,
    days: Annotated[
        float | None, typer.Option("--days", help="Only LLM usage of the last N days.", min=0)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Messages, users and LLM usage (tokens and estimated cost per provider and model)."""
    settings = settings_from(config)
    agent_id = settings.agent.id

    async def main() -> None:
        store = await open_migrated_store(settings)
        try:
            since = datetime.now(UTC) - timedelta(days=days) if days is not None else None
            totals = await store.usage.totals(agent_id, since)
            logged = await store.messages.count(agent_id)
            archived = await store.messages.count(agent_id, archived=True)
        finally:
            await store.close()
        if as_json:
            console.print_json(
                json.dumps(
                    {
                        "agent": agent_id,
                        "messages": {"short_term": logged, "archived": archived},
                        "llm_usage": [
                            {
                                "provider": t.provider,
                                "model": t.model,
                                "calls": t.calls,
                                "input_tokens": t.input_tokens,
                                "output_tokens": t.output_tokens,
                                "cost_usd": round(t.cost_usd, 6),
                            }
                            for t in totals
                        ],
                    }
                )
            )
            return
        console.print(
            f"[bold]{agent_id}[/bold]: {logged} messages in the short-term log, {archived} archived"
        )
        table = Table(
            "provider",
            "model",
            "calls",
            "tokens in",
            "tokens out",
            "est. cost (USD)",
            title="LLM usage" + (f" (last {days:g} days)" if days is not None else ""),
        )
        for total in totals:
            table.add_row(
                total.provider,
                total.model,
                str(total.calls),
                f"{total.input_tokens:,}",
                f"{total.output_tokens:,}",
                f"{total.cost_usd:.4f}",
            )
        if not totals:
            table.add_row("—", "no LLM calls recorded", "0", "0", "0", "0.0000")
        console.print(table)

    run(main)
