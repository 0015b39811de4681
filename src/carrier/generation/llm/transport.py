"""What every provider does the same way: run one call under a deadline and turn transport
and decoding failures into :class:`~carrier.generation.llm.base.LLMError` subclasses.

SDK-specific errors (HTTP statuses, error bodies) are mapped by each provider; what is left
here is what lies beneath both SDKs: the HTTP transport (``httpx2``), JSON decoding and the
overall timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError

from carrier.generation.llm.base import (
    LLMError,
    MalformedResponse,
    Prompt,
    ProviderTimeout,
    ProviderUnavailable,
)
from carrier.generation.llm.tokens import estimate_tokens

T = TypeVar("T")


async def call_with_deadline(
    call: Callable[[], Awaitable[T]],
    *,
    provider: str,
    seconds: float,
    map_sdk_error: Callable[[Exception], LLMError | None],
) -> T:
    """Run ``call`` within ``seconds``; every failure comes out as an ``LLMError``.

    ``map_sdk_error`` maps the provider SDK's own exceptions (``None``: not one of them).
    :class:`asyncio.CancelledError` is never caught.
    """
    try:
        async with asyncio.timeout(seconds):
            return await call()
    except LLMError:
        raise
    except TimeoutError:
        raise ProviderTimeout(
            f"{provider}: no complete answer within {seconds:g} s", provider=provider
        ) from None
    except Exception as exc:
        mapped = map_sdk_error(exc) or map_transport_error(exc, provider)
        raise mapped from exc


def map_transport_error(exc: Exception, provider: str) -> LLMError:
    """An exception from below the SDK (or an unexpected one) as an ``LLMError``."""
    import httpx2

    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout(f"{provider}: timed out ({type(exc).__name__})", provider=provider)
    if isinstance(exc, httpx2.HTTPError):
        return ProviderUnavailable(
            f"{provider}: connection failed ({type(exc).__name__}: {exc})", provider=provider
        )
    if isinstance(exc, (json.JSONDecodeError, ValidationError, ValueError, TypeError, KeyError)):
        return MalformedResponse(
            f"{provider}: unreadable response ({type(exc).__name__})", provider=provider
        )
    return LLMError(f"{provider}: unexpected {type(exc).__name__}: {exc}", provider=provider)


def estimated_input_tokens(prompt: Prompt) -> int:
    """An input-token estimate for providers (or streams) that report no usage."""
    return estimate_tokens(prompt.system) + sum(
        estimate_tokens(m.content) + 4 for m in prompt.messages
    )


def http_status_error(status: int, provider: str, detail: str) -> LLMError:
    """A non-429 HTTP error status as an ``LLMError``: 5xx and 529 (overloaded) mean the
    provider is unavailable, 408 a timeout, the rest a rejected request."""
    if status >= 500:
        return ProviderUnavailable(f"{provider}: HTTP {status}: {detail}", provider=provider)
    if status == 408:
        return ProviderTimeout(f"{provider}: HTTP 408: {detail}", provider=provider)
    return LLMError(f"{provider}: request rejected, HTTP {status}: {detail}", provider=provider)
