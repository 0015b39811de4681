"""OpenAI-compatible chat completions through the official ``openai`` SDK.

Covers OpenAI itself and every server that speaks its ``/v1/chat/completions`` API (Ollama,
llama.cpp's server, vLLM, ...) through ``base_url``.  The SDK's own retries are off
(``max_retries=0``): one call is one attempt, and the generator decides what happens after a
failure.

Streaming (``stream=True``) collects the deltas and returns the whole text once the server
sent a ``finish_reason``.  A stream that breaks or ends before that is a failure
(:class:`ProviderUnavailable`), never a half reply passed off as a success: a cut sentence in
a chat reads worse than the Markov fallback.
"""

from __future__ import annotations

from typing import Any

import openai

from carrier.generation.llm.base import (
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

# A placeholder for servers that take no key (the SDK insists on one).
NO_KEY = "no-key"
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})


class OpenAIChat:
    """One OpenAI-compatible chat model.  See :class:`~carrier.generation.llm.base.LLM`."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        stream: bool = False,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._timeout = timeout_seconds
        self._stream = stream
        self._client = client or openai.AsyncOpenAI(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        messages: list[dict[str, str]] = [{"role": "system", "content": prompt.system}]
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]

        async def call() -> Completion:
            if self._stream:
                return await self._streamed(prompt, messages, max_tokens, temperature)
            return await self._whole(prompt, messages, max_tokens, temperature)

        return await call_with_deadline(
            call, provider=self.name, seconds=self._timeout, map_sdk_error=self._map_error
        )

    async def _whole(
        self, prompt: Prompt, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        response: Any = await self._client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=temperature,
        )
        choices = getattr(response, "choices", None)
        if not choices:
            raise MalformedResponse(f"{self.name}: the answer has no choices", provider=self.name)
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            raise MalformedResponse(f"{self.name}: the answer has no text", provider=self.name)
        usage = getattr(response, "usage", None)
        return self._completion(
            prompt,
            text,
            getattr(response, "model", None),
            choices[0].finish_reason,
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
        )

    async def _streamed(
        self, prompt: Prompt, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        stream: Any = await self._client.chat.completions.create(  # type: ignore[call-overload]
            model=self.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        finish_reason: str | None = None
        model: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        try:
            async for chunk in stream:
                model = getattr(chunk, "model", None) or model
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    input_tokens = usage.prompt_tokens
                    output_tokens = usage.completion_tokens
                for choice in chunk.choices or ():
                    delta = getattr(choice, "delta", None)
                    content = getattr(delta, "content", None)
                    if content:
                        parts.append(content)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        finally:
            await stream.close()
        if finish_reason is None:
            raise ProviderUnavailable(
                f"{self.name}: the stream ended before the answer was finished",
                provider=self.name,
            )
        return self._completion(
            prompt, "".join(parts), model, finish_reason, input_tokens, output_tokens
        )

    def _completion(
        self,
        prompt: Prompt,
        text: str,
        model: str | None,
        finish_reason: str | None,
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
            finish_reason=finish_reason,
            estimated_usage=estimated,
        )

    def _map_error(self, exc: Exception) -> LLMError | None:
        name = self.name
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"{name}: timed out", provider=name)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailable(f"{name}: connection failed: {exc.message}", provider=name)
        if isinstance(exc, openai.APIResponseValidationError):
            return MalformedResponse(f"{name}: {exc.message}", provider=name)
        if isinstance(exc, openai.APIStatusError):
            code = exc.code or getattr(exc, "type", None)
            if code in _QUOTA_CODES or exc.status_code == 402:
                return QuotaExhausted(f"{name}: quota exhausted: {exc.message}", provider=name)
            if exc.status_code == 429:
                return RateLimited(
                    f"{name}: rate limited: {exc.message}",
                    provider=name,
                    retry_after=retry_after_seconds(exc.response.headers),
                )
            return http_status_error(exc.status_code, name, exc.message)
        if isinstance(exc, openai.APIError):
            # An error event inside a stream, without an HTTP status.
            return ProviderUnavailable(f"{name}: {exc.message}", provider=name)
        return None
