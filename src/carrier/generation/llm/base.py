"""The ``LLM`` interface: a prompt in, a completion out, and the only errors it may raise.

Every provider (one module each, see :mod:`carrier.generation.llm.registry`) turns its SDK's
behaviour into these types, so the generator, the circuit breaker and the responder chain
never see an SDK exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation.  User text only ever travels in these, never in the
    system part of a :class:`Prompt`."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a provider is asked: the system part (who the bot is, what it knows, the rules)
    and the conversation, oldest first, ending with a ``user`` message."""

    system: str
    messages: list[ChatMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole, successful answer.  A stream cut midway is never a ``Completion``."""

    text: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    """``stop``/``end_turn`` for a finished answer, ``length``/``max_tokens`` when cut by the
    token limit (the text is still whole sentences up to there)."""
    estimated_usage: bool = False
    """True when the provider reported no usage and the token counts are estimates."""


# --- errors -----------------------------------------------------------------------------


class LLMError(Exception):
    """Base of everything a provider or the LLM generator raises.

    ``provider`` names the provider that failed (empty when it is not about one provider).
    """

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class RateLimited(LLMError):
    """HTTP 429: too many requests.  ``retry_after`` is the server's Retry-After in seconds,
    when it gave one."""

    def __init__(
        self, message: str, *, provider: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class QuotaExhausted(LLMError):
    """The account is out of credit or quota; retrying soon will not help."""


class ProviderUnavailable(LLMError):
    """5xx, overloaded, connection refused or dropped, a stream cut midway."""


class CircuitOpen(ProviderUnavailable):
    """The provider was not asked: its circuit is open or its Retry-After has not passed.
    ``retry_in`` is how long until it may be asked again."""

    def __init__(self, message: str, *, provider: str = "", retry_in: float = 0.0) -> None:
        super().__init__(message, provider=provider)
        self.retry_in = retry_in


class ProviderTimeout(LLMError):
    """No complete answer within the provider's ``timeout_seconds``."""


class MalformedResponse(LLMError):
    """The provider answered with something that is not a usable completion (invalid JSON,
    no choices, a wrong shape)."""


class UnusableOutput(MalformedResponse):
    """A well-formed answer whose text cannot be sent (empty, an echo of the system prompt,
    invalid extraction JSON).  Unlike other failures it says nothing about the provider's
    health, so it does not count towards opening the circuit."""


class AllProvidersFailed(LLMError):
    """Every provider of the chain failed or was skipped; ``errors`` holds why, in order."""

    def __init__(self, message: str, errors: list[LLMError]) -> None:
        super().__init__(message)
        self.errors = errors


# --- the interface ----------------------------------------------------------------------


class LLM(Protocol):
    """A chat-completion provider.

    Contract:

    * ``complete`` returns a :class:`Completion` holding the whole answer, or raises an
      :class:`LLMError` subclass, never anything else (SDK and transport exceptions are
      mapped; :class:`asyncio.CancelledError` propagates untouched);
    * it makes exactly one attempt: no retries, no sleeping on Retry-After (the generator
      and the circuit breaker decide what happens next);
    * it gives up after its configured timeout with :class:`ProviderTimeout`;
    * it never returns a partial answer as a success.
    """

    name: str
    """The provider's name in the configuration, e.g. ``openai`` or ``local-llama``."""
    model: str

    async def complete(
        self, prompt: Prompt, *, max_tokens: int, temperature: float
    ) -> Completion: ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...


def retry_after_seconds(headers: object) -> float | None:
    """Seconds to wait from a response's ``retry-after-ms`` / ``retry-after`` headers
    (delta-seconds or an HTTP date); ``None`` when absent or unreadable."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
