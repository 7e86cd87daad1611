"""A circuit breaker for one fallback tier: plain state, no clock, no I/O.

The caller passes the time (``now``, seconds on any monotonic clock) into every method and carries
out what the breaker says: skip the tier while ``allow`` is false, run a short background synthesis
when ``probe_due`` says so, and report the outcome with ``record_probe``.

States::

    closed ──(failure_threshold consecutive failures)──> open
    open ──(probe_due: the probe interval elapsed)──> half_open      a probe is in flight
    half_open ──(probe ok)──> closed
    half_open ──(probe failed)──> open, next probe after a longer interval (backoff)
    open / half_open ──(a real synthesis succeeded)──> closed

Traffic goes to the tier only while it is closed: a failing tier is skipped at once, and only the
background probe touches it until it recovers. A probe that never reports back does not wedge the
breaker: after ``probe_timeout_s`` in half_open, ``probe_due`` asks for another one.

Every state change is a ``Transition`` appended to ``history`` (bounded). The methods return the
transition when the tier's availability changed (closed <-> not closed), the thing a caller turns
into an event, a log line and a metric; open <-> half_open moves are only in ``history``, so a tier
that keeps failing its probes is not announced as "down" again on every probe.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: State
    to_state: State
    reason: str
    at: float

    @property
    def available(self) -> bool:
        """Whether the tier takes traffic after this change."""
        return self.to_state == "closed"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 1,
        probe_interval_s: float = 5.0,
        backoff_factor: float = 2.0,
        max_probe_interval_s: float = 60.0,
        probe_timeout_s: float = 30.0,
        history_size: int = 64,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if probe_interval_s <= 0 or max_probe_interval_s < probe_interval_s:
            raise ValueError("need 0 < probe_interval_s <= max_probe_interval_s")
        if backoff_factor < 1.0:
            raise ValueError("backoff_factor must be at least 1")
        if probe_timeout_s <= 0:
            raise ValueError("probe_timeout_s must be positive")
        self.failure_threshold = failure_threshold
        self.probe_interval_s = probe_interval_s
        self.backoff_factor = backoff_factor
        self.max_probe_interval_s = max_probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.state: State = "closed"
        self.consecutive_failures = 0
        self.failed_probes = 0  # since the breaker last opened; drives the backoff
        self.last_reason = ""
        self.opened_at: float | None = None
        self.next_probe_at: float | None = None
        self.probe_started_at: float | None = None
        self.history: deque[Transition] = deque(maxlen=history_size)

    # ---- queries -----------------------------------------------------------------------------

    def allow(self, now: float) -> bool:
        """Whether to send real traffic to the tier now."""
        del now  # the decision depends on state only; ``now`` keeps the interface uniform
        return self.state == "closed"

    def probe_due(self, now: float) -> bool:
        """True when the caller should start a background probe now; moves open -> half_open.

        Returns True once per probe (again only if that probe outlives ``probe_timeout_s``).
        """
        if self.state == "open" and self.next_probe_at is not None and now >= self.next_probe_at:
            self._move("half_open", "probe", now)
            self.probe_started_at = now
            return True
        if (
            self.state == "half_open"
            and self.probe_started_at is not None
            and now - self.probe_started_at >= self.probe_timeout_s
        ):
            self.probe_started_at = now  # the last probe never reported: ask for another
            return True
        return False

    def next_deadline(self) -> float | None:
        """When ``probe_due`` next turns true (None: closed, nothing to probe)."""
        if self.state == "open":
            return self.next_probe_at
        if self.state == "half_open" and self.probe_started_at is not None:
            return self.probe_started_at + self.probe_timeout_s
        return None

    def current_probe_interval(self) -> float:
        return min(self.max_probe_interval_s, self.probe_interval_s * self.backoff_factor**self.failed_probes)

    # ---- events ------------------------------------------------------------------------------

    def record_success(self, now: float) -> Transition | None:
        """A real synthesis on this tier succeeded."""
        self.consecutive_failures = 0
        if self.state == "closed":
            return None
        return self._close("success", now)

    def record_failure(self, now: float, reason: str) -> Transition | None:
        """A real synthesis on this tier failed (error, timeout, unreachable)."""
        self.last_reason = reason
        if self.state != "closed":
            return None  # already skipped; a late failure changes nothing
        self.consecutive_failures += 1
        if self.consecutive_failures < self.failure_threshold:
            return None
        self.failed_probes = 0
        self.opened_at = now
        self.next_probe_at = now + self.current_probe_interval()
        return self._move("open", reason, now)

    def record_probe(self, now: float, ok: bool, reason: str = "") -> Transition | None:
        """The outcome of a background probe started after ``probe_due``."""
        if self.state == "closed":
            return None  # real traffic already closed it
        if ok:
            return self._close("probe_ok", now)
        self.last_reason = reason or "probe_failed"
        self.failed_probes += 1
        self.probe_started_at = None
        self.next_probe_at = now + self.current_probe_interval()
        if self.state == "half_open":
            self._move("open", self.last_reason, now)
        return None  # still unavailable: not news

    # ---- internals ---------------------------------------------------------------------------

    def _close(self, reason: str, now: float) -> Transition:
        self.consecutive_failures = 0
        self.failed_probes = 0
        self.opened_at = None
        self.next_probe_at = None
        self.probe_started_at = None
        return self._move("closed", reason, now)

    def _move(self, to_state: State, reason: str, now: float) -> Transition:
        transition = Transition(self.state, to_state, reason, now)
        self.state = to_state
        self.history.append(transition)
        return transition
