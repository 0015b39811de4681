"""Logging set-up with secret redaction.

Every configured secret (tokens, API keys, passwords in URLs) is replaced by ``***`` in every
record, whatever logger emitted it, so a secret never reaches a log file or the console.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from carrier.settings import Settings

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_PASSWORD.sub(r"\1***\3", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


def secrets_of(settings: Settings) -> list[str]:
    values = []
    for secret in (settings.effective_discord_token, settings.redis_url):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def configure_logging(settings: Settings, *, console: bool, log_file: Path | None = None) -> None:
    """Console logging for services; a file (and only warnings on screen) for the chat REPL."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(settings.logging.level)
    formatter: logging.Formatter = (
        JsonFormatter()
        if settings.logging.json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    redactor = RedactingFilter(secrets_of(settings))
    handlers: list[logging.Handler] = []
    stream = logging.StreamHandler()
    stream.setLevel(settings.logging.level if console else logging.WARNING)
    handlers.append(stream)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        root.addHandler(handler)
    # The HTTP clients log every request's full URL at INFO, and a webhook or API URL may
    # carry a token in its query; Carrier logs what it calls itself, without the query.
    for noisy in ("aiosqlite", "sqlalchemy.engine", "alembic", *HTTP_CLIENT_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)
