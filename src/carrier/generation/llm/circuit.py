"""A circuit breaker per provider, so a failing provider is not hammered.

States:

* **closed** — calls go through; ``failures`` consecutive failures open the circuit;
* **open** — the provider is skipped for ``cooldown`` seconds;
* **half-open** — after the cooldown one probe call is let through (concurrent callers keep
  skipping the provider); its success closes the circuit, its failure opens it again for
  another cooldown.

Independently of the state, a Retry-After from the provider keeps it skipped until that
moment (:meth:`CircuitBreaker.hold`), and an exhausted quota opens the circuit at once.

The clock is injectable (``clock() -> seconds``, monotonic by default) so tests move time
by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

Clock = Callable[[], float]


class CircuitState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._held_until = 0.0
        self._probing = False

    @property
    def state(self) -> CircuitState:
        """The state as of now (an open circuit whose cooldown passed reads half-open)."""
        if self._state is CircuitState.OPEN and self._clock() >= self._opened_at + self._cooldown:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def retry_in(self) -> float:
        """Seconds until a call may be let through again (0 when it may now)."""
        now = self._clock()
        wait = max(0.0, self._held_until - now)
        if self._state is CircuitState.OPEN:
            wait = max(wait, self._opened_at + self._cooldown - now)
        return wait

    def acquire(self) -> bool:
        """Whether a call may go to the provider now.  In half-open state only the first
        caller gets ``True`` (the probe) until the probe reports back."""
        now = self._clock()
        if now < self._held_until:
            return False
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self._probing:
            return False
        # half-open: this caller is the probe.
        self._state = CircuitState.HALF_OPEN
        self._probing = True
        return True

    def record_success(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._probing = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if (
            self._probing
            or self._state is CircuitState.HALF_OPEN
            or self._consecutive >= self._threshold
        ):
            self._trip()
        self._probing = False

    def release(self) -> None:
        """The call let through by :meth:`acquire` ended without saying anything about the
        provider's health (cancelled, or an unusable but well-formed answer)."""
        self._probing = False

    def trip(self) -> None:
        """Open now, whatever the count (e.g. the quota is exhausted)."""
        self._consecutive = max(self._consecutive, self._threshold)
        self._trip()
        self._probing = False

    def hold(self, seconds: float) -> None:
        """Skip the provider for ``seconds`` from now (a Retry-After)."""
        self._held_until = max(self._held_until, self._clock() + max(0.0, seconds))

    def _trip(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
