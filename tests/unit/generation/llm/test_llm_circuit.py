"""The circuit breaker: closed -> open after N failures -> half-open probe -> closed."""

from __future__ import annotations

import pytest

from carrier.generation.llm.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_it_opens_after_n_consecutive_failures(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    for _ in range(2):
        assert circuit.acquire()
        circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED
    assert circuit.acquire()
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.acquire()
    assert circuit.retry_in() == pytest.approx(30)


def test_a_success_resets_the_count(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=2, cooldown=30, clock=clock)
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED
    assert circuit.consecutive_failures == 1


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes(
    clock: FakeClock,
) -> None:
    circuit = CircuitBreaker(failures=1, cooldown=30, clock=clock)
    circuit.record_failure()
    clock.now += 29.9
    assert not circuit.acquire()
    clock.now += 0.2
    assert circuit.state is CircuitState.HALF_OPEN
    assert circuit.acquire()  # the probe
    assert not circuit.acquire()  # everyone else waits for it
    circuit.record_success()
    assert circuit.state is CircuitState.CLOSED
    assert circuit.acquire() and circuit.acquire()


def test_a_failed_probe_opens_it_for_another_cooldown(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    for _ in range(3):
        circuit.record_failure()
    clock.now += 31
    assert circuit.acquire()
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.acquire()
    clock.now += 31
    assert circuit.acquire()


def test_a_released_probe_lets_the_next_caller_probe(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=1, cooldown=5, clock=clock)
    circuit.record_failure()
    clock.now += 6
    assert circuit.acquire()
    circuit.release()
    assert circuit.acquire()


def test_retry_after_holds_the_provider_even_while_closed(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=5, cooldown=30, clock=clock)
    circuit.hold(12)
    assert circuit.state is CircuitState.CLOSED
    assert not circuit.acquire()
    assert circuit.retry_in() == pytest.approx(12)
    clock.now += 12
    assert circuit.acquire()


def test_trip_opens_at_once(clock: FakeClock) -> None:
    circuit = CircuitBreaker(failures=5, cooldown=60, clock=clock)
    circuit.trip()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.acquire()
    clock.now += 60
    assert circuit.acquire()


def test_failures_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(failures=0)
