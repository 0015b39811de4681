"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint, through the official
``openai`` SDK: OpenAI itself, or Ollama, llama.cpp's server, vLLM, LiteLLM... by
``base_url``.

Texts are sent ``batch_size`` at a time.  Before sending, each text loses its control
characters (except tab and newline), is cut to :data:`MAX_INPUT_CHARS` characters (so it
stays under OpenAI's 8,192-token input limit even when every character is an emoji of
several tokens) and, when blank, becomes a single space (the API rejects empty strings):
so no text makes a request fail.  The answer is checked (one vector per text, of the
configured size, finite numbers) and L2-normalised.

Failures: a server that cannot be reached, times out, refuses the key, does not know the
model or URL, rate-limits or fails (5xx) raises
:class:`~carrier.memory.embeddings.base.EmbeddingUnavailable`; a request it rejects otherwise
(4xx) or an answer that does not fit raises
:class:`~carrier.memory.embeddings.base.EmbeddingError`.  The messages name the endpoint and
the model, never the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from carrier.memory.embeddings.base import (
    EmbeddingError,
    EmbeddingUnavailable,
    Vectors,
    empty_vectors,
    l2_normalise,
    require,
)

if TYPE_CHECKING:
    from carrier.settings import EmbeddingSettings

# The vector size of well-known models; any other model needs ``dimensions`` configured.
KNOWN_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Models that can return shorter vectors when asked (the ``dimensions`` request parameter).
_SHORTENING_MODELS = frozenset({"text-embedding-3-small", "text-embedding-3-large"})
MAX_INPUT_CHARS = 2048
# A placeholder for servers that take no key (the SDK insists on one).
NO_KEY = "no-key"
OPENAI_BASE_URL = "https://api.openai.com/v1"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class OpenAICompatibleEmbedder:
    """One embeddings model behind an OpenAI-compatible endpoint.  See
    :class:`~carrier.memory.embeddings.base.Embedder` and the module docstring."""

    def __init__(
        self,
        *,
        model: str,
        dimensions: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        batch_size: int = 64,
        max_retries: int = 2,
        client: Any | None = None,
    ) -> None:
        native = KNOWN_DIMENSIONS.get(model)
        size = dimensions or native
        if size is None:
            raise ValueError(
                f"the vector size of the embeddings model {model!r} is not known: set "
                "embeddings.dimensions to it"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = f"openai/{model}"
        self.dimensions = size
        self._model = model
        self._batch_size = batch_size
        self._timeout = timeout_seconds
        self._where = f"the embeddings endpoint {base_url or OPENAI_BASE_URL} (model {model})"
        # Ask for a size only where the model can shorten its vectors; other servers may
        # reject the parameter, and return their model's own size anyway.
        self._request_dimensions = (
            size if model in _SHORTENING_MODELS and native is not None and size != native else None
        )
        if client is None:
            require("openai", purpose="the openai embeddings provider")
            import openai

            client = openai.AsyncOpenAI(
                api_key=api_key or NO_KEY,
                base_url=base_url,
                timeout=timeout_seconds,
                max_retries=max_retries,
            )
        self._client = client

    @classmethod
    def from_settings(
        cls, settings: EmbeddingSettings, environ: Mapping[str, str] | None = None
    ) -> OpenAICompatibleEmbedder:
        """The embedder ``embeddings`` configures; the key is read from the variable
        ``api_key_env`` names, in ``environ`` (default: the environment over ``.env``)."""
        from carrier.settings import ConfigError, environment_with_dotenv

        api_key = None
        if settings.api_key_env is not None:
            env = environment_with_dotenv() if environ is None else environ
            api_key = env.get(settings.api_key_env, "").strip()
            if not api_key:
                raise ConfigError(
                    f"embeddings: the environment variable {settings.api_key_env} named by "
                    "api_key_env is not set; set it in the environment or .env, or use "
                    "api_key_env: null for a server that needs no key"
                )
        try:
            return cls(
                model=settings.model,
                dimensions=settings.dimensions,
                base_url=settings.base_url,
                api_key=api_key,
                timeout_seconds=settings.timeout_seconds,
                batch_size=settings.batch_size,
            )
        except ValueError as exc:
            raise ConfigError(f"embeddings: {exc}") from exc

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 0:
            return empty_vectors(self.dimensions)
        prepared = [prepare_text(text) for text in texts]
        parts = [
            await self._request(prepared[start : start + self._batch_size])
            for start in range(0, len(prepared), self._batch_size)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def aclose(self) -> None:
        await self._client.close()

    async def _request(self, batch: list[str]) -> Vectors:
        import openai

        extra: dict[str, Any] = {}
        if self._request_dimensions is not None:
            extra["dimensions"] = self._request_dimensions
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=batch, encoding_format="float", **extra
            )
        except openai.APIError as exc:
            raise self._error(exc) from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise EmbeddingError(
                f"{self._where} returned {len(data)} vectors for {len(batch)} texts"
            )
        sizes = {len(item.embedding) for item in data}
        if sizes != {self.dimensions}:
            got = ", ".join(str(size) for size in sorted(sizes))
            raise EmbeddingError(
                f"{self._where} returned vectors of {got} dimensions, but "
                f"{self.dimensions} are configured (embeddings.dimensions)"
            )
        vectors = np.array([item.embedding for item in data], dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise EmbeddingError(f"{self._where} returned a vector that is not finite")
        return l2_normalise(vectors)

    def _error(self, exc: Exception) -> EmbeddingError:
        import openai

        where = self._where
        if isinstance(exc, openai.APITimeoutError):
            return EmbeddingUnavailable(f"{where} gave no answer within {self._timeout:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return EmbeddingUnavailable(f"cannot connect to {where}: {exc.message}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return EmbeddingUnavailable(
                    f"{where} refused the API key (HTTP {status}); check the variable named "
                    "by embeddings.api_key_env"
                )
            if status == 404:
                return EmbeddingUnavailable(
                    f"{where} answered HTTP 404: the model or the URL does not exist there "
                    "(check embeddings.model and embeddings.base_url)"
                )
            if status == 429 or status >= 500:
                return EmbeddingUnavailable(
                    f"{where} is unavailable (HTTP {status}): {_brief(exc)}"
                )
            return EmbeddingError(f"{where} rejected the request (HTTP {status}): {_brief(exc)}")
        return EmbeddingError(f"{where} failed: {_brief(exc)}")


def prepare_text(text: str) -> str:
    """``text`` as the endpoint accepts it: no control characters (tab and newline stay),
    at most :data:`MAX_INPUT_CHARS` characters, never blank."""
    cleaned = _CONTROL.sub(" ", text[:MAX_INPUT_CHARS])
    # Lone surrogates cannot be sent as JSON text.
    cleaned = cleaned.encode("utf-8", "replace").decode("utf-8")
    return cleaned if cleaned.strip() else " "


def _brief(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message if len(message) <= 300 else message[:300] + "..."
