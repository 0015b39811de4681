"""Anthropic's Messages API through the official ``anthropic`` SDK.

The system part goes in ``system=``; the conversation must start with a user turn and
alternate, so consecutive messages of one role are merged (people's lines are joined with
newlines, each still ``Name: text``) and a conversation that starts with the bot's own line
gets a neutral user turn in front.  SDK retries are off (``max_retries=0``).

``temperature`` is accepted (the ``LLM`` interface) but not sent: the API version this SDK
speaks (``2026-10-21``) removed the sampling parameters and answers HTTP 400 to any of them.

Streaming collects the text deltas and returns them once ``message_stop`` arrived; a stream
that breaks or ends before is :class:`ProviderUnavailable`, never a half reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar

import anthropic

from carrier.generation.llm.base import (
    ChatMessage,
    Completion,
    LLMError,
    MalformedResponse,
    Prompt,
    ProviderUnavailable,
    QuotaExhausted,
)
from carrier.generation.llm.sdk_chat import SdkChat, StreamedAnswer
from carrier.generation.llm.sdk_errors import rate_limited
from carrier.generation.llm.transport import http_status_error

CONVERSATION_START = "(The conversation so far.)"
YOUR_TURN = "(It is your turn to speak.)"


def alternate(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """Merge consecutive same-role messages; start with a user turn."""
    merged: list[dict[str, str]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message.role:
            merged[-1]["content"] += "\n" + message.content
        else:
            merged.append({"role": message.role, "content": message.content})
    if not merged:
        merged.append({"role": "user", "content": YOUR_TURN})
    elif merged[0]["role"] != "user":
        merged.insert(0, {"role": "user", "content": CONVERSATION_START})
    return merged


class AnthropicChat(SdkChat[anthropic.AsyncAnthropic]):
    """One Anthropic model.  See :class:`~carrier.generation.llm.base.LLM`."""

    sdk: ClassVar[ModuleType] = anthropic

    def _new_client(
        self, *, api_key: str, base_url: str | None, timeout: float
    ) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            open_telemetry=False,
            # The SDK's aiohttp transport: far less CPU per call than its default (httpx)
            # under many concurrent calls (bench/bench_llm.py).
            http_client=anthropic.DefaultAioHttpClient(timeout=timeout),
        )

    def _arguments(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": prompt.system,
            "messages": alternate(prompt.messages),
        }

    async def _whole(self, prompt: Prompt, arguments: dict[str, Any]) -> Completion:
        response: Any = await self._client.messages.create(**arguments)
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise MalformedResponse(f"{self.name}: the answer has no content", provider=self.name)
        texts = [b.text for b in blocks if getattr(b, "type", None) == "text"]
        if not texts:
            raise MalformedResponse(f"{self.name}: the answer has no text", provider=self.name)
        usage = getattr(response, "usage", None)
        return self._completion(
            prompt,
            "".join(texts),
            model=getattr(response, "model", None),
            finish_reason=getattr(response, "stop_reason", None),
            input_tokens=getattr(usage, "input_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
        )

    async def _open_stream(self, arguments: dict[str, Any]) -> Any:
        return await self._client.messages.create(**arguments, stream=True)

    def _read_event(self, event: Any, answer: StreamedAnswer) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            answer.model = event.message.model
            answer.input_tokens = event.message.usage.input_tokens
        elif kind == "content_block_delta":
            if getattr(event.delta, "type", None) == "text_delta":
                answer.parts.append(event.delta.text)
        elif kind == "message_delta":
            answer.finish_reason = event.delta.stop_reason or answer.finish_reason
            answer.output_tokens = getattr(event.usage, "output_tokens", answer.output_tokens)
        elif kind == "message_stop":
            answer.finished = True

    def _status_error(self, exc: anthropic.APIStatusError) -> LLMError:
        name = self.name
        detail = exc.api_message or exc.message
        if (
            exc.status_code == 402
            or exc.type == "billing_error"
            or "credit balance" in (detail or "").lower()
        ):
            return QuotaExhausted(f"{name}: quota exhausted: {detail}", provider=name)
        if exc.status_code == 429 or exc.type == "rate_limit_error":
            return rate_limited(exc, name, detail)
        if exc.status_code < 400 or exc.type in ("overloaded_error", "api_error"):
            # An error event inside a stream that had started with HTTP 200.
            return ProviderUnavailable(f"{name}: {exc.type}: {detail}", provider=name)
        return http_status_error(exc.status_code, name, detail)
