"""Terminal chat: talk to the bot in a simulated channel.

Lines are messages from the current speaker; commands start with ``/``.  ``@Name`` in a
line mentions the bot.  The client only converts lines into IncomingMessages and prints
Replies; every behaviour is the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from carrier.engine.messages import IncomingMessage, Outcome
from carrier.engine.pipeline import Engine
from carrier.persona.service import load_persona
from carrier.store.database import DatabaseError

GUILD = "terminal"
HELP = """\
[bold]Talk[/bold] by typing.  [bold]@{name}[/bold] mentions the bot.
  /as NAME         speak as someone else (default: you)
  /reply TEXT      reply to the bot's last message
  /channel NAME    move to another channel
  /why             why the bot answered or stayed silent, and the context it used
  /rel [NAME]      relationship values with a user
  /memory [NAME]   what is stored about a user
  /mood            today's mood
  /persona         the persona as stored now
  /help, /quit"""


class TerminalChat:
    def __init__(self, engine: Engine, console: Console | None = None) -> None:
        self.engine = engine
        self.console = console or Console()
        self.speaker = "you"
        self.channel = "general"
        self.last: Outcome | None = None
        self.last_bot_message: str | None = None
        self._ids = itertools.count(1)
        self._stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")

    @property
    def user_id(self) -> str:
        return f"terminal:{self.speaker.lower()}"

    @property
    def channel_id(self) -> str:
        return f"terminal:{self.channel}"

    async def run(self, read_line: Callable[[str], Awaitable[str]] | None = None) -> None:
        """The REPL; returns on /quit or end of input."""
        if read_line is None:
            prepare_stdin()
        reader = read_line or _read_stdin
        persona = await load_persona(self.engine.store, self.engine.agent_id)
        self.console.print(
            f"[bold]{persona.name}[/bold] is here. Type /help for commands, /quit to leave."
        )
        while True:
            try:
                line = await reader(f"{self.speaker}> ")
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return
            if line.strip() in ("/quit", "/exit"):
                return
            await self.handle_line(line)

    async def handle_line(self, line: str) -> Outcome | None:
        """One line of input: a command or a message.  Returns the message's outcome."""
        stripped = line.strip()
        if stripped.startswith("/"):
            command, _, rest = stripped.partition(" ")
            handler = {
                "/as": self._as,
                "/channel": self._channel,
                "/why": self._why,
                "/rel": self._rel,
                "/memory": self._memory,
                "/mood": self._mood,
                "/persona": self._persona,
                "/help": self._help,
            }.get(command)
            if command == "/reply":
                return await self.say(rest, reply=True)
            if handler is None:
                self.console.print(f"[red]unknown command {command}[/red]; try /help")
                return None
            await handler(rest.strip())
            return None
        return await self.say(line)

    async def say(self, text: str, *, reply: bool = False) -> Outcome | None:
        persona = await load_persona(self.engine.store, self.engine.agent_id)
        names = [persona.name, *persona.nicknames]
        mentions = any(re.search(rf"@{re.escape(n)}\b", text, re.IGNORECASE) for n in names if n)
        msg = IncomingMessage(
            guild_id=GUILD,
            channel_id=self.channel_id,
            message_id=f"t{self._stamp}-{next(self._ids)}",
            author_id=self.user_id,
            author_name=self.speaker,
            text=text,
            created_at=datetime.now(UTC),
            mentions_bot=mentions,
            reply_to_message_id=self.last_bot_message if reply else None,
            reply_to_author_id=self.engine.bot_user_id if reply and self.last_bot_message else None,
            reply_to_bot=reply and self.last_bot_message is not None,
        )
        try:
            outcome = await self.engine.handle(msg)
        except DatabaseError as exc:
            self.console.print(f"[red]could not record that message:[/red] {exc}", highlight=False)
            return None
        self.last = outcome
        if outcome.reply is not None:
            self.last_bot_message = outcome.reply.message_id
            self.console.print(
                f"[bold cyan]{persona.name}[/bold cyan]: {outcome.reply.text}",
                markup=True,
                highlight=False,
            )
        return outcome

    async def _as(self, name: str) -> None:
        if not name:
            self.console.print("usage: /as NAME")
            return
        self.speaker = name[:32]
        self.console.print(f"now speaking as [bold]{self.speaker}[/bold]")

    async def _channel(self, name: str) -> None:
        if not name:
            self.console.print(f"in #{self.channel}")
            return
        self.channel = name.lstrip("#")[:64]
        self.console.print(f"moved to #{self.channel}")

    async def _why(self, _: str) -> None:
        if self.last is None:
            self.console.print("nothing said yet")
            return
        out = self.last
        self.console.print(f"decision: [bold]{out.decision}[/bold]")
        if out.reply is not None:
            self.console.print(f"reply from: {out.reply.source}")
        for key, value in out.context.items():
            self.console.print(f"  {key}: {value}", highlight=False)
        if out.timings_ms:
            spent = ", ".join(f"{k} {v:.1f} ms" for k, v in out.timings_ms.items())
            self.console.print(f"  timings: {spent}")

    async def _user(self, name: str) -> str:
        if not name:
            return self.user_id
        found = await self.engine.store.users.find(self.engine.agent_id, name)
        return found.user_id if found else f"terminal:{name.lower()}"

    async def _rel(self, name: str) -> None:
        user_id = await self._user(name)
        rel = await self.engine.parts.relationships.current(
            self.engine.agent_id, user_id, datetime.now(UTC)
        )
        table = Table("metric", "value", title=f"relationship with {name or self.speaker}")
        for key, value in rel.as_dict().items():
            table.add_row(key, f"{value:.2f}")
        self.console.print(table)
        self.console.print(rel.describe(name or self.speaker))

    async def _memory(self, name: str) -> None:
        user_id = await self._user(name)
        store, agent = self.engine.store, self.engine.agent_id
        user = await store.users.get(agent, user_id)
        if user is None:
            self.console.print(f"nothing stored about {name or self.speaker}")
            return
        nicknames = await store.users.nicknames(agent, user_id)
        recent = await store.messages.by_author(agent, user_id, limit=5)
        self.console.print(
            f"[bold]{user.name}[/bold] ({user.user_id}): "
            f"{user.message_count} messages since {user.first_seen:%Y-%m-%d %H:%M}"
        )
        self.console.print("nicknames: " + ", ".join(n.nickname for n in nicknames))
        for logged in recent:
            self.console.print(
                f"  {logged.created_at:%H:%M:%S} {logged.text[:80]}", highlight=False, markup=False
            )

    async def _mood(self, _: str) -> None:
        mood = await self.engine.parts.mood.current(self.engine.agent_id, datetime.now(UTC))
        self.console.print(f"mood on {mood.day}: {mood.describe()} {mood.as_dict()}")

    async def _persona(self, _: str) -> None:
        persona = await load_persona(self.engine.store, self.engine.agent_id)
        self.console.print(f"[bold]{persona.name}[/bold] ({', '.join(persona.nicknames)})")
        for label, items in (
            ("traits", persona.traits),
            ("lore", persona.lore),
            ("facts", persona.facts),
        ):
            self.console.print(f"[bold]{label}[/bold]: " + "; ".join(items), highlight=False)

    async def _help(self, _: str) -> None:
        persona = await load_persona(self.engine.store, self.engine.agent_id)
        self.console.print(HELP.format(name=persona.name))


async def _read_stdin(prompt: str) -> str:
    return await asyncio.to_thread(_input, prompt)


def _input(prompt: str) -> str:
    return input(prompt)


def prepare_stdin() -> None:
    """Undecodable bytes from a terminal must not end the chat: keep them as surrogates
    (the engine turns them into U+FFFD)."""
    if hasattr(sys.stdin, "reconfigure"):
        with contextlib.suppress(OSError, ValueError):  # stdin already read or not text
            sys.stdin.reconfigure(errors="surrogateescape")
