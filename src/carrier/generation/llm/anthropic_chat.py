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
from typing import Any

import anthropic

from carrier.generation.llm.base import (
    ChatMessage,
    Completion,
    LLMError,
    MalformedResponse,
    Prompt,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    retry_after_seconds,
)
from carrier.generation.llm.tokens import estimate_tokens
from carrier.generation.llm.transport import (
    call_with_deadline,
    estimated_input_tokens,
    http_status_error,
)

NO_KEY = "no-key"
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


class AnthropicChat:
    """One Anthropic model.  See :class:`~carrier.generation.llm.base.LLM`."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        stream: bool = False,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._timeout = timeout_seconds
        self._stream = stream
        self._client = client or anthropic.AsyncAnthropic(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
            open_telemetry=False,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        arguments: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": prompt.system,
            "messages": alternate(prompt.messages),
        }

        async def call() -> Completion:
            if self._stream:
                return await self._streamed(prompt, arguments)
            return await self._whole(prompt, arguments)

        return await call_with_deadline(
            call, provider=self.name, seconds=self._timeout, map_sdk_error=self._map_error
        )

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
            getattr(response, "model", None),
            getattr(response, "stop_reason", None),
            getattr(usage, "input_tokens", None),
            getattr(usage, "output_tokens", None),
        )

    async def _streamed(self, prompt: Prompt, arguments: dict[str, Any]) -> Completion:
        stream: Any = await self._client.messages.create(**arguments, stream=True)
        parts: list[str] = []
        model: str | None = None
        stop_reason: str | None = None
        finished = False
        input_tokens: int | None = None
        output_tokens: int | None = None
        try:
            async for event in stream:
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    model = event.message.model
                    input_tokens = event.message.usage.input_tokens
                elif kind == "content_block_delta":
                    if getattr(event.delta, "type", None) == "text_delta":
                        parts.append(event.delta.text)
                elif kind == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = getattr(event.usage, "output_tokens", output_tokens)
                elif kind == "message_stop":
                    finished = True
        finally:
            await stream.close()
        if not finished:
            raise ProviderUnavailable(
                f"{self.name}: the stream ended before the answer was finished",
                provider=self.name,
            )
        return self._completion(
            prompt, "".join(parts), model, stop_reason, input_tokens, output_tokens
        )

    def _completion(
        self,
        prompt: Prompt,
        text: str,
        model: str | None,
        stop_reason: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> Completion:
        estimated = input_tokens is None or output_tokens is None
        return Completion(
            text=text,
            model=model or self.model,
            provider=self.name,
            input_tokens=input_tokens
            if input_tokens is not None
            else estimated_input_tokens(prompt),
            output_tokens=output_tokens if output_tokens is not None else estimate_tokens(text),
            finish_reason=stop_reason,
            estimated_usage=estimated,
        )

    def _map_error(self, exc: Exception) -> LLMError | None:
        name = self.name
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(f"{name}: timed out", provider=name)
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderUnavailable(f"{name}: connection failed: {exc.message}", provider=name)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return MalformedResponse(f"{name}: {exc.message}", provider=name)
        if isinstance(exc, anthropic.APIStatusError):
            detail = exc.api_message or exc.message
            if (
                exc.status_code == 402
                or exc.type == "billing_error"
                or "credit balance" in (detail or "").lower()
            ):
                return QuotaExhausted(f"{name}: quota exhausted: {detail}", provider=name)
            if exc.status_code == 429 or exc.type == "rate_limit_error":
                return RateLimited(
                    f"{name}: rate limited: {detail}",
                    provider=name,
                    retry_after=retry_after_seconds(exc.response.headers),
                )
            if exc.status_code < 400 or exc.type in ("overloaded_error", "api_error"):
                # An error event inside a stream that had started with HTTP 200.
                return ProviderUnavailable(f"{name}: {exc.type}: {detail}", provider=name)
            return http_status_error(exc.status_code, name, detail)
        if isinstance(exc, anthropic.APIError):
            return ProviderUnavailable(f"{name}: {exc.message}", provider=name)
        return None
