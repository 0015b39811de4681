"""Counting the SQL statements that read a table (tests: "this was served without a read")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from carrier.store.store import Store


@contextmanager
def statements_on(store: Store, table: str) -> Iterator[list[str]]:
    """The statements run against ``store`` that read ``table`` (``FROM table``) while the
    block runs, in order; the list may be cleared to count afresh."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if f"FROM {table}" in statement:
            seen.append(statement)

    target = store.engine.async_engine.sync_engine
    event.listen(target, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", listen)
