"""Reading chat exports to train a Markov chain: DiscordChatExporter JSON and plain text.

The format is told by content: a file whose first non-blank character is ``{`` is read as a
DiscordChatExporter JSON export, anything else as plain text with one message per line (a
``.txt`` name always means plain text; a ``.json`` name that does not hold JSON is an error).

JSON exports of big servers run to hundreds of megabytes, so the ``messages`` list is streamed
one message at a time instead of loading the whole document.  Bot messages are yielded with
``author_is_bot`` set (the caller skips them and can count them); empty messages and Discord's
system messages (joins, pins, calls, ...) are skipped here.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

ExportFormat = Literal["discord-json", "text"]

_CHUNK = 1 << 20
_CONVERSATION_TYPES = frozenset({"Default", "Reply"})
_WHITESPACE = " \t\r\n"


class ExportFormatError(Exception):
    """The file cannot be read as a chat export; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class ExportedMessage:
    """One message of an export: who wrote it (a bot or not) and what it said."""

    author_is_bot: bool
    text: str


def iter_export_messages(path: Path) -> Iterator[ExportedMessage]:
    """The messages of a chat export, in file order (see the module docstring)."""
    return iter(ChatExport(path))


class ChatExport:
    """An export file being read; ``bytes_read`` / ``size`` tell how far along it is."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.size = self.path.stat().st_size
        except FileNotFoundError:
            raise ExportFormatError(f"{self.path}: no such file") from None
        if not self.path.is_file():
            raise ExportFormatError(f"{self.path}: not a regular file")
        self.bytes_read = 0
        self.format = self._detect()

    def _detect(self) -> ExportFormat:
        with self.path.open("rb") as fh:
            head = fh.read(4096)
        first = head.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
        suffix = self.path.suffix.lower()
        if suffix == ".txt":
            return "text"
        if first == b"{":
            return "discord-json"
        if suffix == ".json":
            what = "is empty" if not first else "does not start with a JSON object"
            raise ExportFormatError(
                f"{self.path}: {what}; expected a DiscordChatExporter JSON export"
            )
        return "text"

    def __iter__(self) -> Iterator[ExportedMessage]:
        with self.path.open("rb") as fh:
            if self.format == "text":
                yield from self._text(fh)
            else:
                yield from self._discord_json(fh)

    def _text(self, fh: BinaryIO) -> Iterator[ExportedMessage]:
        for number, raw in enumerate(fh, start=1):
            self.bytes_read += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ExportFormatError(
                    f"{self.path}: line {number} is not UTF-8 text; save the export as UTF-8"
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            text = line.strip()
            if text:
                yield ExportedMessage(author_is_bot=False, text=text)

    def _discord_json(self, fh: BinaryIO) -> Iterator[ExportedMessage]:
        stream = _JsonStream(fh, self)
        for index, item in enumerate(stream.messages()):
            if not isinstance(item, dict):
                raise ExportFormatError(f"{self.path}: messages[{index}] is not an object")
            message = _message(item)
            if message is not None:
                yield message


def _message(item: dict[str, Any]) -> ExportedMessage | None:
    content = item.get("content")
    if not isinstance(content, str) or not content.strip():
        return None
    if item.get("type", "Default") not in _CONVERSATION_TYPES:
        return None
    author = item.get("author")
    is_bot = bool(author.get("isBot", False)) if isinstance(author, dict) else False
    return ExportedMessage(author_is_bot=is_bot, text=content.strip())


class _JsonStream:
    """Just enough of an incremental JSON reader for ``{..., "messages": [...], ...}``.

    Every value but the ``messages`` list is decoded whole with the standard library; the list
    is decoded one element at a time from a buffer refilled by 1 MiB chunks.
    """

    def __init__(self, fh: BinaryIO, export: ChatExport) -> None:
        self._fh = fh
        self._export = export
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._json = json.JSONDecoder()
        self._buf = ""
        self._pos = 0
        self._eof = False

    def _error(self, what: str) -> ExportFormatError:
        return ExportFormatError(
            f"{self._export.path}: not a valid DiscordChatExporter JSON export: {what}"
        )

    def _fill(self) -> None:
        chunk = self._fh.read(_CHUNK)
        self._export.bytes_read += len(chunk)
        try:
            text = self._decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            raise ExportFormatError(
                f"{self._export.path}: not UTF-8 text (bad bytes near offset "
                f"{self._export.bytes_read - len(chunk)}); save the export as UTF-8"
            ) from None
        self._buf = self._buf[self._pos :] + text
        self._pos = 0
        if not chunk:
            self._eof = True

    def _peek(self) -> str | None:
        """The next non-blank character (not consumed), ``None`` at the end of the file."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._eof:
                return None
            self._fill()

    def _expect(self, char: str, what: str) -> None:
        if self._peek() != char:
            found = self._peek()
            raise self._error(f"expected {what}, found {found!r}" if found else f"{what} missing")
        self._pos += 1

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = self._json.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof:
                    raise self._error(exc.msg) from None
            else:
                # A value is complete once something follows it (a number cut by the chunk
                # boundary would otherwise decode short).
                if end < len(self._buf) or self._eof:
                    self._pos = end
                    return value
            self._fill()

    def messages(self) -> Iterator[Any]:
        first = self._peek()
        if first != "{":
            raise self._error("the file is empty" if first is None else "not a JSON object")
        self._pos += 1
        found = False
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                key = self._value()
                if not isinstance(key, str):
                    raise self._error("object keys must be strings")
                self._expect(":", "':'")
                if key == "messages" and self._peek() == "[":
                    found = True
                    yield from self._list()
                elif key == "messages":
                    raise self._error('"messages" is not a list')
                else:
                    self._value()
                if self._peek() == ",":
                    self._pos += 1
                    continue
                self._expect("}", "',' or '}'")
                break
        if not found:
            raise self._error('no "messages" list (is this a DiscordChatExporter JSON export?)')

    def _list(self) -> Iterator[Any]:
        self._expect("[", "'['")
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            yield self._value()
            if self._peek() == ",":
                self._pos += 1
                continue
            self._expect("]", "',' or ']'")
            return
