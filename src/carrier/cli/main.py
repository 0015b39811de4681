"""The ``carrier`` command."""

from __future__ import annotations

import typer

from carrier import __version__
from carrier.cli import apikey, chat, db, instagram, memory, persona, serve, stats, train

app = typer.Typer(
    name="carrier",
    help="Carrier: a persona bot that lives in group chats.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("run")(chat.run_bot)
app.command("chat")(chat.chat)
app.command("train")(train.train)
app.command("stats")(stats.stats)
app.add_typer(db.app, name="db", help="Database schema migrations.")
app.add_typer(memory.app, name="memory", help="Long-term memory: facts, search, export.")
app.add_typer(persona.app, name="persona", help="The bot's persona: import, export, edit.")
app.add_typer(instagram.app, name="instagram", help="Post media to Instagram; the posting queue.")
app.command("serve")(serve.serve)
app.add_typer(apikey.app, name="apikey", help="API keys for the HTTP API: create, list, revoke.")


@app.command("version")
def version() -> None:
    """Print Carrier's version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
