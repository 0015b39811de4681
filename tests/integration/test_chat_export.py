"""Reading chat exports, and ``carrier train`` end to end on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from carrier.cli.train import train
from carrier.generation import chat_export
from carrier.generation.chat_export import (
    ChatExport,
    ExportedMessage,
    ExportFormatError,
    iter_export_messages,
)
from carrier.generation.markov import BEGIN
from carrier.store.database import create_engine
from carrier.store.store import Store


def discord_message(content: str, *, bot: bool = False, kind: str = "Default") -> dict[str, Any]:
    return {
        "id": str(random.randrange(10**17, 10**18)),
        "type": kind,
        "timestamp": "2024-05-01T12:00:00+00:00",
        "isPinned": False,
        "content": content,
        "author": {"id": "1", "name": "someone", "isBot": bot, "roles": []},
        "attachments": [],
        "embeds": [],
        "reactions": [],
        "mentions": [],
    }


def write_export(path: Path, messages: list[dict[str, Any]], **extra: Any) -> Path:
    document = {
        "guild": {"id": "42", "name": "Test Server", "iconUrl": ""},
        "channel": {"id": "7", "type": "GuildTextChat", "name": "general", "topic": None},
        "dateRange": {"after": None, "before": None},
        "exportedAt": "2024-05-02T00:00:00+00:00",
        "messages": messages,
        "messageCount": len(messages),
        **extra,
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


SAMPLE = [
    discord_message("hello everyone, how are you?"),
    discord_message("I am the bot, beep boop", bot=True),
    discord_message(""),
    discord_message("   "),
    discord_message("Joined the server.", kind="GuildMemberJoin"),
    discord_message('café ☕ and "quotes" \\ backslashes\nnew line', kind="Reply"),
    discord_message("last one from a human"),
]


def test_discord_json_yields_humans_and_flags_bots(tmp_path: Path) -> None:
    path = write_export(tmp_path / "export.json", SAMPLE)
    assert list(iter_export_messages(path)) == [
        ExportedMessage(False, "hello everyone, how are you?"),
        ExportedMessage(True, "I am the bot, beep boop"),
        ExportedMessage(False, 'café ☕ and "quotes" \\ backslashes\nnew line'),
        ExportedMessage(False, "last one from a human"),
    ]


def test_discord_json_streams_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    alphabet = 'abc xyz é☕😀"\\\n{}[],:'
    messages = [
        discord_message("".join(rng.choices(alphabet, k=rng.randint(1, 40))) + "!", bot=i % 7 == 0)
        for i in range(300)
    ]
    path = write_export(tmp_path / "big.json", messages, messageCount=1234567890123)
    expected = [
        ExportedMessage(m["author"]["isBot"], m["content"].strip())
        for m in messages
        if m["content"].strip()
    ]
    monkeypatch.setattr(chat_export, "_CHUNK", 7)  # split every token and UTF-8 sequence
    export = ChatExport(path)
    assert list(export) == expected
    assert export.bytes_read == path.stat().st_size


def test_messages_may_come_before_other_keys_or_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text('{"messages": [{"content": "first words here"}], "guild": {"id": 1}}')
    assert [m.text for m in iter_export_messages(path)] == ["first words here"]
    path.write_text('{"guild": {}, "messages": []}')
    assert list(iter_export_messages(path)) == []


def test_plain_text_is_one_message_per_line(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_bytes("\ufefffirst line\r\n\r\n  second line  \n\n\nthird ☕\n".encode())
    assert [m.text for m in iter_export_messages(path)] == [
        "first line",
        "second line",
        "third ☕",
    ]
    assert not any(m.author_is_bot for m in iter_export_messages(path))


def test_format_is_told_by_content(tmp_path: Path) -> None:
    json_without_suffix = write_export(tmp_path / "export", SAMPLE)
    assert ChatExport(json_without_suffix).format == "discord-json"
    text_with_braces = tmp_path / "notes.log"
    text_with_braces.write_text("just a line\n{not json at all\n")
    assert ChatExport(text_with_braces).format == "text"
    braces_in_a_txt = tmp_path / "chat.txt"
    braces_in_a_txt.write_text("{curly} opener\n")
    assert [m.text for m in iter_export_messages(braces_in_a_txt)] == ["{curly} opener"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("broken.json", b'{"messages": [{"content": "a"}, {"content": ', "not a valid"),
        ("broken.json", b'{"messages": [{"content": "a"} {"content": "b"}]}', "expected"),
        ("nomessages.json", b'{"guild": {"id": "1"}, "channel": {}}', 'no "messages"'),
        ("notalist.json", b'{"messages": {"content": "a"}}', '"messages" is not a list'),
        ("items.json", b'{"messages": ["just a string"]}', "messages[0] is not an object"),
        ("latin1.json", '{"messages": [{"content": "caf\xe9"}]}'.encode("latin-1"), "UTF-8"),
        ("latin1.txt", "caf\xe9 au lait\n".encode("latin-1"), "line 1 is not UTF-8"),
        ("plain.json", b"hello there\nthis is not json\n", "does not start with a JSON"),
        ("empty.json", b"", "is empty"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ExportFormatError) as caught:
        list(iter_export_messages(path))
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match="no such file"):
        iter_export_messages(tmp_path / "nope.json")


# -- carrier train ---------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Carrier (test app with the command registered as the lead will)."""

    app.command("train")(train)
    return app


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'carrier.db'}\n")
    return path


def flat(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


async def chain_summary(database: Path, guild: str) -> tuple[int, list[tuple[str, int]]]:
    store = Store(create_engine(f"sqlite+aiosqlite:///{database}"))
    try:
        chain = await store.markov.find_chain("fish", guild)
        assert chain is not None
        count = await store.markov.message_count(chain.id)
        return count, await store.markov.next_words(chain.id, f"{BEGIN} {BEGIN}")
    finally:
        await store.close()


def test_train_learns_a_discord_export_without_its_bots(tmp_path: Path, config: Path) -> None:
    export = write_export(
        tmp_path / "export.json",
        [*SAMPLE, discord_message("ok"), discord_message("beep boop again", bot=True)],
    )
    result = CliRunner().invoke(
        cli(), ["train", str(export), "--guild", "g42", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "learned 3 messages into guild g42" in flat(result.output)
    assert "skipped 2 from bots and 1 under two words" in flat(result.output)
    count, openings = asyncio.run(chain_summary(tmp_path / "carrier.db", "g42"))
    assert count == 3
    assert sorted(openings) == [("café", 1), ("hello", 1), ("last", 1)]


def test_train_learns_plain_text_and_adds_up_on_a_second_run(tmp_path: Path, config: Path) -> None:
    export = tmp_path / "chat.txt"
    export.write_text("we like trains\nwe like boats\n\nsingle\n", encoding="utf-8")
    runner = CliRunner()
    args = ["train", str(export), "--guild", "g1", "--config", str(config)]
    assert runner.invoke(cli(), args).exit_code == 0
    result = runner.invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert "learned 2 messages" in flat(result.output)
    count, openings = asyncio.run(chain_summary(tmp_path / "carrier.db", "g1"))
    assert (count, openings) == (4, [("we", 4)])


def test_train_reports_a_bad_file_cleanly(tmp_path: Path, config: Path) -> None:
    missing = CliRunner().invoke(
        cli(), ["train", str(tmp_path / "missing.txt"), "--guild", "g1", "-c", str(config)]
    )
    assert missing.exit_code == 1
    assert "missing.txt: no such file" in flat(missing.output)
    assert not (tmp_path / "carrier.db").exists()  # nothing opened for a file that is not there

    bad = tmp_path / "broken.json"
    bad.write_text('{"guild": {}, "channel": {}}')
    result = CliRunner().invoke(cli(), ["train", str(bad), "--guild", "g1", "-c", str(config)])
    assert result.exit_code == 1
    assert "broken.json" in flat(result.output) and 'no "messages"' in flat(result.output)
    assert "Traceback" not in result.output


def test_train_requires_a_guild(tmp_path: Path, config: Path) -> None:
    export = tmp_path / "chat.txt"
    export.write_text("some words here\n")
    result = CliRunner().invoke(cli(), ["train", str(export), "--config", str(config)])
    assert result.exit_code == 2
    assert "--guild" in result.output
