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

from types import ModuleType
from typing import Any, ClassVar

import openai
import orjson
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from carrier.generation.llm.base import (
    Completion,
    LLMError,
    MalformedResponse,
    Prompt,
    QuotaExhausted,
)
from carrier.generation.llm.sdk_chat import SdkChat, StreamedAnswer
from carrier.generation.llm.sdk_errors import rate_limited
from carrier.generation.llm.transport import http_status_error

# Posted through the SDK's client.post (its documented way to make any request) instead of
# chat.completions.create: the same request, auth, errors and parsed response, without
# create's walk over every message against the TypedDicts of its parameters, which cost
# ~15 ms of CPU per call for a full transcript (the body here is plain JSON already).
_COMPLETIONS = "/chat/completions"

_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})


class OpenAIChat(SdkChat[openai.AsyncOpenAI]):
    """One OpenAI-compatible chat model.  See :class:`~carrier.generation.llm.base.LLM`."""

    sdk: ClassVar[ModuleType] = openai

    def _new_client(
        self, *, api_key: str, base_url: str | None, timeout: float
    ) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            # The SDK's aiohttp transport: a third of the CPU per call of its default
            # (httpx) under many concurrent calls (bench/bench_llm.py).
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )

    def _arguments(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": prompt.system}]
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    async def _whole(self, prompt: Prompt, arguments: dict[str, Any]) -> Completion:
        # cast_to=object: the SDK hands back the decoded JSON as it is (a dict; the text for
        # a body that is not JSON), instead of building its models of the whole answer for
        # the three fields read here (~0.3 ms of CPU per call).
        # The body goes encoded (orjson) as the content: the SDK sends it as it is, where it
        # would encode a dict with the standard library's json (~0.2 ms for a transcript).
        response: Any = await self._client.post(
            _COMPLETIONS, content=orjson.dumps(arguments), cast_to=object
        )
        if not isinstance(response, dict):
            raise MalformedResponse(
                f"{self.name}: the answer is not a JSON object", provider=self.name
            )
        choices = response.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise MalformedResponse(f"{self.name}: the answer has no choices", provider=self.name)
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise MalformedResponse(f"{self.name}: the answer has no text", provider=self.name)
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        model = response.get("model")
        finish_reason = choices[0].get("finish_reason")
        return self._completion(
            prompt,
            text,
            model=model if isinstance(model, str) else None,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            input_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
        )

    async def _open_stream(self, arguments: dict[str, Any]) -> Any:
        return await self._client.post(
            _COMPLETIONS,
            content=orjson.dumps(
                {**arguments, "stream": True, "stream_options": {"include_usage": True}}
            ),
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )

    def _read_event(self, event: Any, answer: StreamedAnswer) -> None:
        answer.model = getattr(event, "model", None) or answer.model
        usage = getattr(event, "usage", None)
        if usage is not None:
            answer.input_tokens = usage.prompt_tokens
            answer.output_tokens = usage.completion_tokens
        for choice in event.choices or ():
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                answer.parts.append(content)
            if choice.finish_reason:
                answer.finish_reason = choice.finish_reason
                answer.finished = True

    def _status_error(self, exc: openai.APIStatusError) -> LLMError:
        name = self.name
        code = exc.code or getattr(exc, "type", None)
        if code in _QUOTA_CODES or exc.status_code == 402:
            return QuotaExhausted(f"{name}: quota exhausted: {exc.message}", provider=name)
        if exc.status_code == 429:
            return rate_limited(exc, name, exc.message)
        return http_status_error(exc.status_code, name, exc.message)


def _count(value: object) -> int | None:
    """A token count as reported (None when missing or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
