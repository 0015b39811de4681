"""The LLM generator over in-process providers: the chain, circuits, checks, usage."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from datetime import UTC, datetime

import pytest

from carrier.generation.llm.base import (
    AllProvidersFailed,
    CircuitOpen,
    Completion,
    LLMError,
    Prompt,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    UnusableOutput,
)
from carrier.generation.llm.circuit import CircuitState
from carrier.generation.llm.generator import (
    ChainProvider,
    LLMGenerator,
    clean_output,
    echoes_system,
    strip_name_prefix,
    trim,
)
from carrier.generation.llm.prompt import RULE_LINES
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.generation.responder import ResponderChain
from carrier.persona.service import Persona
from carrier.store.messages import LoggedMessage

PERSONA = Persona(name="Finnegan", nicknames=("fish",), traits=("curious",))
RNG = random.Random(1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedLLM:
    """An in-process LLM: each call takes the next step (text or exception)."""

    def __init__(self, name: str, *steps: str | LLMError, model: str = "m1") -> None:
        self.name = name
        self.model = model
        self.steps: deque[str | LLMError] = deque(steps)
        self.prompts: list[Prompt] = []
        self.calls: list[tuple[int, float]] = []

    async def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        self.prompts.append(prompt)
        self.calls.append((max_tokens, temperature))
        step = self.steps.popleft() if self.steps else "default answer"
        if isinstance(step, LLMError):
            raise step
        return Completion(step, self.model, self.name, 10, 5, "stop")

    async def aclose(self) -> None:
        pass


def request(purpose: str = "reply", text: str = "fish, hi!") -> ReplyRequest:
    return ReplyRequest(
        purpose=purpose,  # type: ignore[arg-type]
        agent_id="fish",
        persona=PERSONA,
        message_text=text,
        author_name="Alice",
    )


def generator(*llms: ScriptedLLM, clock: FakeClock | None = None, **kw: object) -> LLMGenerator:
    return LLMGenerator(
        [ChainProvider(llm, max_tokens=100, temperature=0.7) for llm in llms],
        clock=clock or FakeClock(),
        **kw,  # type: ignore[arg-type]
    )


async def test_the_first_provider_answers_with_its_name_and_model_as_source() -> None:
    first = ScriptedLLM("primary", "Hello Alice!", model="gpt-x")
    second = ScriptedLLM("backup", "unused")
    result = await generator(first, second).generate(request(), RNG)
    assert result == GeneratedText("Hello Alice!", "llm:primary:gpt-x")
    assert second.prompts == []
    assert first.calls == [(100, 0.7)]
    assert first.prompts[0].messages[-1].content == "Alice: fish, hi!"


@pytest.mark.parametrize(
    "failure",
    [
        ProviderUnavailable("down"),
        RateLimited("slow down", retry_after=5),
        QuotaExhausted("broke"),
        LLMError("rejected"),
    ],
)
async def test_a_failing_provider_hands_over_to_the_next(failure: LLMError) -> None:
    first = ScriptedLLM("primary", failure)
    second = ScriptedLLM("backup", "Backup here.")
    result = await generator(first, second).generate(request(), RNG)
    assert result.text == "Backup here."
    assert result.source == "llm:backup:m1"


async def test_every_provider_failing_raises_and_the_responder_falls_back() -> None:
    gen = generator(
        ScriptedLLM("a", ProviderUnavailable("a down")), ScriptedLLM("b", QuotaExhausted("b"))
    )
    with pytest.raises(AllProvidersFailed) as caught:
        await gen.generate(request(), RNG)
    assert [type(e) for e in caught.value.errors] == [ProviderUnavailable, QuotaExhausted]
    assert "a down" in str(caught.value)

    class Markov:
        name = "markov"

        async def generate(self, req: ReplyRequest, rng: random.Random) -> GeneratedText:
            return GeneratedText("blub blub", "markov:guild")

    chain = ResponderChain([generator(ScriptedLLM("c", ProviderUnavailable("x"))), Markov()])
    assert await chain.generate(request(), RNG) == GeneratedText("blub blub", "markov:guild")


async def test_retry_after_keeps_the_provider_skipped_until_it_passes() -> None:
    clock = FakeClock()
    first = ScriptedLLM("primary", RateLimited("429", retry_after=20), "I'm back.")
    second = ScriptedLLM("backup")
    gen = generator(first, second, clock=clock, circuit_failures=5)
    assert (await gen.generate(request(), RNG)).source == "llm:backup:m1"
    clock.now = 19.5
    assert (await gen.generate(request(), RNG)).source == "llm:backup:m1"
    assert len(first.prompts) == 1  # not asked while held
    clock.now = 20.0
    result = await gen.generate(request(), RNG)
    assert result == GeneratedText("I'm back.", "llm:primary:m1")


async def test_a_skipped_provider_is_reported_as_circuit_open() -> None:
    clock = FakeClock()
    only = ScriptedLLM("only", RateLimited("429", retry_after=30))
    gen = generator(only, clock=clock)
    with pytest.raises(AllProvidersFailed):
        await gen.generate(request(), RNG)
    with pytest.raises(AllProvidersFailed) as caught:
        await gen.generate(request(), RNG)
    (skipped,) = caught.value.errors
    assert isinstance(skipped, CircuitOpen)
    assert skipped.retry_in == pytest.approx(30)


async def test_the_circuit_opens_after_n_failures_and_a_probe_closes_it() -> None:
    clock = FakeClock()
    flaky = ScriptedLLM("flaky", *[ProviderUnavailable("500")] * 3, "Recovered.")
    backup = ScriptedLLM("backup")
    gen = generator(flaky, backup, clock=clock, circuit_failures=3, circuit_cooldown=30)
    for _ in range(3):
        await gen.generate(request(), RNG)
    assert gen.circuit("flaky").state is CircuitState.OPEN
    for _ in range(5):
        assert (await gen.generate(request(), RNG)).source == "llm:backup:m1"
    assert len(flaky.prompts) == 3  # skipped while open
    clock.now = 30
    assert gen.circuit("flaky").state is CircuitState.HALF_OPEN
    assert (await gen.generate(request(), RNG)).text == "Recovered."
    assert gen.circuit("flaky").state is CircuitState.CLOSED


async def test_an_exhausted_quota_opens_the_circuit_at_once() -> None:
    clock = FakeClock()
    broke = ScriptedLLM("broke", QuotaExhausted("no credit"))
    gen = generator(broke, ScriptedLLM("backup"), clock=clock, circuit_failures=10)
    await gen.generate(request(), RNG)
    assert gen.circuit("broke").state is CircuitState.OPEN


async def test_an_unusable_answer_tries_the_next_provider_without_blaming_the_first() -> None:
    echo = "Sure. " + RULE_LINES[3]
    first = ScriptedLLM("primary", echo, "   ")
    second = ScriptedLLM("backup", "Fine answer.", "Another fine answer.")
    gen = generator(first, second, circuit_failures=1)
    assert (await gen.generate(request(), RNG)).text == "Fine answer."
    assert (await gen.generate(request(), RNG)).text == "Another fine answer."
    assert gen.circuit("primary").state is CircuitState.CLOSED
    assert len(first.prompts) == 2


async def test_usage_of_every_completion_goes_to_the_callback() -> None:
    seen: list[Completion] = []

    async def on_usage(completion: Completion, purpose: str) -> None:
        assert purpose == "reply"
        seen.append(completion)

    first = ScriptedLLM("primary", "")  # used tokens, unusable text
    second = ScriptedLLM("backup", "ok")
    await generator(first, second, on_usage=on_usage).generate(request(), RNG)
    assert [(c.provider, c.input_tokens, c.output_tokens) for c in seen] == [
        ("primary", 10, 5),
        ("backup", 10, 5),
    ]


async def test_a_failing_usage_callback_does_not_lose_the_reply() -> None:
    def on_usage(completion: Completion, purpose: str) -> None:
        raise RuntimeError("database down")

    result = await generator(ScriptedLLM("p", "hello"), on_usage=on_usage).generate(request(), RNG)
    assert result.text == "hello"


async def test_cancellation_propagates_and_frees_the_probe() -> None:
    class Slow(ScriptedLLM):
        async def complete(
            self, prompt: Prompt, *, max_tokens: int, temperature: float
        ) -> Completion:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

    gen = generator(Slow("slow"))
    task = asyncio.create_task(gen.generate(request(), RNG))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gen.circuit("slow").acquire()


async def test_a_prompt_builder_that_raises_during_the_probe_frees_it() -> None:
    clock = FakeClock()
    flaky = ScriptedLLM("flaky", *[ProviderUnavailable("500")] * 3, "Recovered.")
    gen = generator(flaky, clock=clock, circuit_failures=3, circuit_cooldown=30)
    for _ in range(3):
        with pytest.raises(AllProvidersFailed):
            await gen.generate(request(), RNG)
    clock.now = 30
    assert gen.circuit("flaky").state is CircuitState.HALF_OPEN

    def broken_build(_provider: ChainProvider) -> Prompt:
        raise ValueError("a persona the builder cannot render")

    with pytest.raises(ValueError, match="cannot render"):
        await gen.run(broken_build, lambda completion, _prompt: completion.text)
    assert len(flaky.prompts) == 3  # the provider was never asked
    # The probe slot is free again: the next reply probes and closes the circuit.
    assert (await gen.generate(request(), RNG)).text == "Recovered."
    assert gen.circuit("flaky").state is CircuitState.CLOSED


async def test_status_lines_are_one_short_line_without_quotes() -> None:
    long_status = '"' + "watching the river " * 12 + '"\nand a second line'
    result = await generator(ScriptedLLM("p", long_status)).generate(request("status"), RNG)
    assert len(result.text) <= 128
    assert '"' not in result.text
    assert "\n" not in result.text
    assert result.text.startswith("watching the river")


async def test_fact_extraction_runs_through_the_chain_with_validation() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    lines = [
        LoggedMessage("fish", "c", "1", "alice", "Alice", "I have a cat named Miso", now),
    ]
    bad = ScriptedLLM("bad", "Alice has a cat!")
    good = ScriptedLLM(
        "good", '{"facts": [{"user": "Alice", "fact": "Has a cat, Miso.", "category": "personal"}]}'
    )
    gen = generator(bad, good)
    facts = await gen.extract_facts(lines, bot_name="Finnegan", known_users=["Alice"])
    assert [(f.user, f.fact) for f in facts] == [("Alice", "Has a cat, Miso.")]
    assert good.calls == [(1024, 0.0)]  # deterministic, with room for the JSON
    assert gen.circuit("bad").state is CircuitState.CLOSED


def test_a_leading_bot_name_is_stripped() -> None:
    names = ("Finnegan", "fish")
    assert strip_name_prefix("Finnegan: hi there", names) == "hi there"
    assert strip_name_prefix("**fish**: hi", names) == "hi"
    assert strip_name_prefix("Fishing: is fun", names) == "Fishing: is fun"
    assert strip_name_prefix("hi Finnegan: you", names) == "hi Finnegan: you"


def test_an_echo_of_the_system_prompt_is_recognised() -> None:
    system = "You are Finnegan.\nRules:\n- " + "\n- ".join(RULE_LINES)
    assert echoes_system("My instructions say: " + RULE_LINES[1], system)
    assert echoes_system(RULE_LINES[3].upper(), system)
    assert not echoes_system("I am Finnegan, a fish. I never reveal secrets!", system)


def test_trim_prefers_a_sentence_end_then_a_word_boundary() -> None:
    text = "First sentence here. Second sentence is much longer than the limit allows."
    assert trim(text, 40) == "First sentence here."
    assert trim("word " * 20, 23) == "word word word word…"
    assert trim("short", 40) == "short"


def test_an_answer_cut_by_the_token_limit_ends_at_its_last_sentence() -> None:
    completion = Completion("One. Two is cut mid", "m", "p", 1, 1, "length")
    assert clean_output(completion, system="", names=("Finnegan",), max_chars=500) == "One."


def test_an_empty_answer_is_unusable() -> None:
    with pytest.raises(UnusableOutput, match="empty"):
        clean_output(
            Completion("Finnegan:  ", "m", "p", 1, 1), system="", names=("Finnegan",), max_chars=9
        )


def test_a_generator_needs_providers() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        LLMGenerator([])
