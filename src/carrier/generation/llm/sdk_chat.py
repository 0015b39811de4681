"""The base of the providers built on an official, Stainless-generated SDK (``openai``,
``anthropic``): the constructor the registry calls, one attempt under the deadline, the SDK's
errors mapped, streaming or not.

A provider module subclasses :class:`SdkChat` with its SDK's client class and says only what
differs: how the client is made, the request, how an answer (whole or streamed) is read and
what an error status means.  This module imports no SDK.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from carrier.generation.llm.base import Completion, LLMError, Prompt, ProviderUnavailable
from carrier.generation.llm.sdk_errors import map_sdk_error
from carrier.generation.llm.tokens import estimate_tokens
from carrier.generation.llm.transport import call_with_deadline, estimated_input_tokens

# A placeholder for servers that take no key (the SDKs insist on one).
NO_KEY = "no-key"


class SdkClient(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=SdkClient)


@dataclass(slots=True)
class StreamedAnswer:
    """What a stream has delivered so far; ``finished`` once the provider said the answer
    is complete."""

    parts: list[str] = field(default_factory=list)
    model: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished: bool = False


class SdkChat(ABC, Generic[ClientT]):
    """One model behind an SDK client.  See :class:`~carrier.generation.llm.base.LLM`.

    ``client`` replaces the client the provider would make (its own settings then apply);
    a client made here has the SDK's retries off: one call is one attempt.
    """

    sdk: ClassVar[ModuleType]
    """The SDK module, whose exception classes :func:`map_sdk_error` checks."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        stream: bool = False,
        client: ClientT | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._timeout = timeout_seconds
        self._stream = stream
        self._client: ClientT = client or self._new_client(
            api_key=api_key or NO_KEY, base_url=base_url, timeout=timeout_seconds
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        arguments = self._arguments(prompt, max_tokens=max_tokens, temperature=temperature)

        async def call() -> Completion:
            if self._stream:
                return await self._streamed(prompt, arguments)
            return await self._whole(prompt, arguments)

        return await call_with_deadline(
            call, provider=self.name, seconds=self._timeout, map_sdk_error=self._map_error
        )

    async def _streamed(self, prompt: Prompt, arguments: dict[str, Any]) -> Completion:
        """Collect a streamed answer; one that ends before it was finished is
        :class:`ProviderUnavailable`, never half a reply."""
        stream = await self._open_stream(arguments)
        answer = StreamedAnswer()
        try:
            async for event in stream:
                self._read_event(event, answer)
        finally:
            await stream.close()
        if not answer.finished:
            raise ProviderUnavailable(
                f"{self.name}: the stream ended before the answer was finished",
                provider=self.name,
            )
        return self._completion(
            prompt,
            "".join(answer.parts),
            model=answer.model,
            finish_reason=answer.finish_reason,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
        )

    def _completion(
        self,
        prompt: Prompt,
        text: str,
        *,
        model: str | None,
        finish_reason: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> Completion:
        """The answer as a :class:`Completion`, with the model and token counts the provider
        reported; a count it did not report is estimated, and ``estimated_usage`` says so."""
        return Completion(
            text=text,
            model=model or self.model,
            provider=self.name,
            input_tokens=input_tokens
            if input_tokens is not None
            else estimated_input_tokens(prompt),
            output_tokens=output_tokens if output_tokens is not None else estimate_tokens(text),
            finish_reason=finish_reason,
            estimated_usage=input_tokens is None or output_tokens is None,
        )

    def _map_error(self, exc: Exception) -> LLMError | None:
        return map_sdk_error(exc, sdk=self.sdk, provider=self.name, status_error=self._status_error)

    @abstractmethod
    def _new_client(self, *, api_key: str, base_url: str | None, timeout: float) -> ClientT:
        """The SDK client, with the SDK's own retries off."""

    @abstractmethod
    def _arguments(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> dict[str, Any]:
        """The keyword arguments of the SDK's create call for ``prompt``."""

    @abstractmethod
    async def _whole(self, prompt: Prompt, arguments: dict[str, Any]) -> Completion:
        """Ask for the whole answer at once."""

    @abstractmethod
    async def _open_stream(self, arguments: dict[str, Any]) -> Any:
        """Ask for the answer as a stream: the SDK's async-iterable stream of events."""

    @abstractmethod
    def _read_event(self, event: Any, answer: StreamedAnswer) -> None:
        """Add what one event of the stream says to ``answer``."""

    @abstractmethod
    def _status_error(self, exc: Any) -> LLMError:
        """The SDK's ``APIStatusError`` as an ``LLMError``."""
