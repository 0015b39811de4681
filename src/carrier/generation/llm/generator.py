"""The LLM generator: a chain of providers behind the responder's ``Generator`` protocol.

Providers are tried in order.  A provider whose circuit is open, or whose Retry-After has
not passed, is skipped without a call; a provider that fails is recorded on its circuit and
the next one is asked.  When every provider failed or was skipped,
:class:`~carrier.generation.llm.base.AllProvidersFailed` is raised and the responder chain
falls back to Markov.

Every answer is checked before it is used: an empty answer or one that echoes the system
prompt is :class:`~carrier.generation.llm.base.UnusableOutput` (the next provider is asked,
the provider's circuit is not blamed); a leading ``Name:`` is stripped; text over the length
limit is trimmed at a sentence or word boundary.  Token usage of every completion, used or
not, goes to the optional ``on_usage`` callback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import SecretStr

from carrier.generation.llm.base import (
    LLM,
    AllProvidersFailed,
    CircuitOpen,
    Completion,
    LLMError,
    Prompt,
    QuotaExhausted,
    RateLimited,
    UnusableOutput,
)
from carrier.generation.llm.circuit import CircuitBreaker, Clock
from carrier.generation.llm.extraction import (
    ExtractedFact,
    build_extraction_prompt,
    parse_extraction,
)
from carrier.generation.llm.prompt import (
    RULE_LINES,
    STATUS_MAX_CHARS,
    PromptBudget,
    build_prompt,
)
from carrier.generation.llm.tokens import TokenCounter, token_counter_for
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.settings import LLMSettings
from carrier.store.messages import LoggedMessage

log = logging.getLogger(__name__)

T = TypeVar("T")
UsageCallback = Callable[[Completion, str], Awaitable[None] | None]
"""Called with every completion and the purpose it served (reply, proactive, status,
extraction)."""

# A 429 without Retry-After still keeps the provider aside for a moment.
DEFAULT_RETRY_AFTER = 1.0
EXTRACTION_MAX_TOKENS = 1024
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")
_HEADINGS = (
    "facts and quirks about you:",
    "how things stand between you:",
    "what you remember about",
    "lines in this server's voice",
    "things from earlier conversations that may matter now:",
    "your task:",
    "examples of how you talk:",
)


@dataclass(frozen=True, slots=True)
class ChainProvider:
    """One link of the chain: a provider and how to ask it."""

    llm: LLM
    max_tokens: int = 300
    temperature: float = 0.9
    context_window: int = 8192
    count: TokenCounter | None = field(default=None)
    """Token counter for its prompts; ``None``: the best offline one for its model."""

    @property
    def name(self) -> str:
        return self.llm.name

    def counter(self) -> TokenCounter:
        return self.count or token_counter_for(self.llm.model)


class LLMGenerator:
    """A :class:`~carrier.generation.responder.Generator` over a chain of LLM providers."""

    name = "llm"

    def __init__(
        self,
        providers: Sequence[ChainProvider],
        *,
        circuit_failures: int = 3,
        circuit_cooldown: float = 30.0,
        clock: Clock = time.monotonic,
        on_usage: UsageCallback | None = None,
        max_reply_chars: int = 2000,
        max_transcript_tokens: int | None = None,
    ) -> None:
        if not providers:
            raise ValueError("an LLM generator needs at least one provider")
        self._providers = list(providers)
        self._circuits = {
            p.name: CircuitBreaker(
                failures=circuit_failures, cooldown=circuit_cooldown, clock=clock
            )
            for p in self._providers
        }
        self._counters = {p.name: p.counter() for p in self._providers}
        self._on_usage = on_usage
        self._max_reply_chars = max_reply_chars
        self._max_transcript_tokens = max_transcript_tokens

    @classmethod
    def from_settings(
        cls,
        settings: LLMSettings,
        api_keys: Mapping[str, SecretStr | None],
        *,
        clock: Clock = time.monotonic,
        on_usage: UsageCallback | None = None,
        max_reply_chars: int = 2000,
        max_transcript_tokens: int | None = None,
    ) -> LLMGenerator:
        """The configured chain; ``api_keys`` from :func:`carrier.settings.llm_api_keys`."""
        from carrier.generation.llm.registry import create_provider

        chain = [
            ChainProvider(
                llm=create_provider(p, api_keys.get(p.name)),
                max_tokens=p.max_tokens,
                temperature=p.temperature,
                context_window=p.context_window,
            )
            for p in settings.providers
        ]
        return cls(
            chain,
            circuit_failures=settings.circuit_failures,
            circuit_cooldown=settings.circuit_cooldown_seconds,
            clock=clock,
            on_usage=on_usage,
            max_reply_chars=max_reply_chars,
            max_transcript_tokens=max_transcript_tokens,
        )

    @property
    def provider_names(self) -> list[str]:
        return [p.name for p in self._providers]

    def circuit(self, provider: str) -> CircuitBreaker:
        return self._circuits[provider]

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.llm.aclose()

    # -- the Generator protocol -----------------------------------------------------------

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText:
        """A reply, proactive message or status line for ``request``.

        Raises :class:`AllProvidersFailed` when no provider gave a usable answer.
        """
        limit = STATUS_MAX_CHARS if request.purpose == "status" else self._max_reply_chars

        def build(provider: ChainProvider) -> Prompt:
            return build_prompt(request, self._budget(provider))

        def check(completion: Completion, prompt: Prompt) -> str:
            return clean_output(
                completion,
                system=prompt.system,
                names=request.persona.names,
                max_chars=limit,
                single_line=request.purpose == "status",
            )

        text, completion = await self.run(build, check, purpose=request.purpose)
        return GeneratedText(text, f"llm:{completion.provider}:{completion.model}")

    # -- consolidation -----------------------------------------------------------------------

    async def extract_facts(
        self,
        lines: Sequence[LoggedMessage],
        *,
        bot_name: str,
        known_users: Collection[str] | None = None,
    ) -> list[ExtractedFact]:
        """Long-term facts in one batch of log lines (see
        :func:`~carrier.generation.llm.extraction.batches_for_extraction`).  Raises
        :class:`AllProvidersFailed` when no provider returned valid JSON."""
        prompt = build_extraction_prompt(lines, bot_name=bot_name)

        def check(completion: Completion, _prompt: Prompt) -> list[ExtractedFact]:
            return parse_extraction(completion.text, known_users=known_users)

        facts, _completion = await self.run(
            lambda _provider: prompt,
            check,
            temperature=0.0,
            max_tokens=EXTRACTION_MAX_TOKENS,
            purpose="extraction",
        )
        return facts

    # -- the chain ---------------------------------------------------------------------------

    async def run(
        self,
        build: Callable[[ChainProvider], Prompt],
        check: Callable[[Completion, Prompt], T],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        purpose: str = "reply",
    ) -> tuple[T, Completion]:
        """Ask the providers in order until ``check`` accepts an answer.

        ``build`` makes the prompt for a provider (budgets differ); ``check`` turns a
        completion into the result or raises :class:`UnusableOutput`.  ``temperature`` and
        ``max_tokens`` override the providers' own (``max_tokens`` is a floor).
        """
        errors: list[LLMError] = []
        for provider in self._providers:
            circuit = self._circuits[provider.name]
            if not circuit.acquire():
                wait = circuit.retry_in()
                errors.append(
                    CircuitOpen(
                        f"{provider.name}: skipped, may be asked again in {wait:.1f} s",
                        provider=provider.name,
                        retry_in=wait,
                    )
                )
                continue
            try:
                # Built after acquire() (budgets are per provider), so a builder that raises
                # must hand the probe slot back, or a half-open circuit would never probe again.
                prompt = build(provider)
            except BaseException:
                circuit.release()
                raise
            try:
                completion = await provider.llm.complete(
                    prompt,
                    max_tokens=max(provider.max_tokens, max_tokens or 0),
                    temperature=provider.temperature if temperature is None else temperature,
                )
            except asyncio.CancelledError:
                circuit.release()
                raise
            except LLMError as exc:
                self._record_failure(circuit, exc)
                errors.append(exc)
                log.warning("LLM provider %s failed: %s", provider.name, exc)
                continue
            except Exception as exc:  # a provider that broke its contract
                circuit.record_failure()
                errors.append(LLMError(f"{provider.name}: {exc!r}", provider=provider.name))
                log.exception("LLM provider %s raised outside its contract", provider.name)
                continue
            circuit.record_success()
            await self._report_usage(completion, purpose)
            try:
                return check(completion, prompt), completion
            except UnusableOutput as exc:
                exc.provider = exc.provider or provider.name
                errors.append(exc)
                log.warning("LLM provider %s gave an unusable answer: %s", provider.name, exc)
        reasons = "; ".join(str(e) for e in errors)
        raise AllProvidersFailed(f"no LLM provider answered: {reasons}", errors)

    def _record_failure(self, circuit: CircuitBreaker, exc: LLMError) -> None:
        if isinstance(exc, QuotaExhausted):
            circuit.trip()
            return
        if isinstance(exc, UnusableOutput):
            circuit.release()
            return
        circuit.record_failure()
        if isinstance(exc, RateLimited):
            circuit.hold(exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER)

    def _budget(self, provider: ChainProvider) -> PromptBudget:
        return PromptBudget(
            context_window=provider.context_window,
            max_tokens=provider.max_tokens,
            count=self._counters[provider.name],
            max_transcript_tokens=self._max_transcript_tokens,
        )

    async def _report_usage(self, completion: Completion, purpose: str) -> None:
        if self._on_usage is None:
            return
        try:
            result = self._on_usage(completion, purpose)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("recording LLM usage failed")


# --- checking an answer -------------------------------------------------------------------


def _normalise(text: str) -> str:
    """Case and runs of whitespace aside."""
    return " ".join(text.split()).casefold()


_ECHO_LINE = 30
"""Shorter lines and sentences are too common to prove an echo."""

_RULE_SENTENCES = tuple(
    sentence
    for rule in RULE_LINES
    for sentence in (_normalise(part) for part in re.split(r"(?<=[.:;])\s+", rule))
    if len(sentence) >= _ECHO_LINE
)


def echoes_system(output: str, system: str) -> bool:
    """Whether ``output`` repeats the system prompt: a rule sentence, two section headings,
    or three of its longer lines, verbatim (case and spacing aside)."""
    said = _normalise(output)
    if not said:
        return False
    if any(sentence in said for sentence in _RULE_SENTENCES):
        return True
    if sum(1 for heading in _HEADINGS if heading in said) >= 2:
        return True
    if len(said) < _ECHO_LINE:
        return False  # too short to hold a long line
    long_lines = {
        _normalise(line) for line in system.splitlines() if len(line.strip()) >= _ECHO_LINE
    }
    return sum(1 for line in long_lines if line in said) >= 3


def strip_name_prefix(text: str, names: Sequence[str]) -> str:
    """``Finnegan: hello`` -> ``hello`` (also ``**Finnegan**:`` and nicknames)."""
    for name in sorted(names, key=len, reverse=True):
        if not name:
            continue
        pattern = re.compile(rf"^\s*[*_]*{re.escape(name)}[*_]*\s*:\s*", re.IGNORECASE)
        stripped = pattern.sub("", text, count=1)
        if stripped != text:
            return stripped
    return text


def _unquote(text: str) -> str:
    pairs = (('"', '"'), ("“", "”"), ("'", "'"), ("«", "»"))
    for left, right in pairs:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            inner = text[1:-1].strip()
            if left not in inner and right not in inner:
                return inner
    return text


def trim(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars``: at the last sentence end if one is in the second half,
    else at a word boundary with an ellipsis."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 2:
        return head[: ends[-1]].rstrip()
    cut = head[: max_chars - 1]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:-") + "…"


def clean_output(
    completion: Completion,
    *,
    system: str,
    names: Sequence[str],
    max_chars: int,
    single_line: bool = False,
) -> str:
    """The text to send, or :class:`UnusableOutput`."""
    text = completion.text.strip()
    if echoes_system(text, system):
        raise UnusableOutput(
            f"{completion.provider}: the answer repeats the system prompt",
            provider=completion.provider,
        )
    text = _unquote(strip_name_prefix(text, names).strip())
    if single_line:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        text = _unquote(text).strip("\"'“”")
    if completion.finish_reason in ("length", "max_tokens"):
        # Cut by the token limit: end at the last whole sentence when there is one.
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends:
            text = text[: ends[-1]]
    text = trim(text.strip(), max_chars)
    if not text:
        raise UnusableOutput(f"{completion.provider}: empty answer", provider=completion.provider)
    return text
