"""The circuit breaker: table-driven scripts of (time, event) -> expected result and state."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_server.core.breaker import CircuitBreaker, Transition


@dataclass(frozen=True)
class Step:
    now: float
    op: str  # "fail", "ok", "probe_ok", "probe_fail", "allow", "due"
    expect: object  # bool for allow/due; "closed"/"open"/None (the returned transition's to_state)
    state: str  # the state after the step


def run(breaker: CircuitBreaker, step: Step) -> object:
    match step.op:
        case "fail":
            t = breaker.record_failure(step.now, "engine_error")
        case "ok":
            t = breaker.record_success(step.now)
        case "probe_ok":
            t = breaker.record_probe(step.now, True)
        case "probe_fail":
            t = breaker.record_probe(step.now, False, "engine_timeout")
        case "allow":
            return breaker.allow(step.now)
        case "due":
            return breaker.probe_due(step.now)
        case _:
            raise AssertionError(step.op)
    return None if t is None else t.to_state


SCRIPTS: dict[str, tuple[CircuitBreaker, list[Step]]] = {
    "closed allows, success changes nothing": (
        CircuitBreaker(),
        [Step(0, "allow", True, "closed"), Step(1, "ok", None, "closed"), Step(2, "due", False, "closed")],
    ),
    "one failure opens and the tier is skipped": (
        CircuitBreaker(probe_interval_s=5),
        [
            Step(0, "fail", "open", "open"),
            Step(0.1, "allow", False, "open"),
            Step(4.9, "due", False, "open"),
            Step(4.9, "allow", False, "open"),
        ],
    ),
    "threshold 3 needs three consecutive failures": (
        CircuitBreaker(failure_threshold=3),
        [
            Step(0, "fail", None, "closed"),
            Step(1, "fail", None, "closed"),
            Step(2, "ok", None, "closed"),  # resets the count
            Step(3, "fail", None, "closed"),
            Step(4, "fail", None, "closed"),
            Step(5, "allow", True, "closed"),
            Step(6, "fail", "open", "open"),
        ],
    ),
    "probe due after the interval, once; success closes": (
        CircuitBreaker(probe_interval_s=5),
        [
            Step(0, "fail", "open", "open"),
            Step(5, "due", True, "half_open"),
            Step(5.1, "due", False, "half_open"),  # one probe at a time
            Step(5.2, "allow", False, "half_open"),  # traffic still skipped while probing
            Step(6, "probe_ok", "closed", "closed"),
            Step(6.1, "allow", True, "closed"),
            Step(100, "due", False, "closed"),
        ],
    ),
    "failed probes back off: 5, 10, 20, capped at 30": (
        CircuitBreaker(probe_interval_s=5, backoff_factor=2, max_probe_interval_s=30),
        [
            Step(0, "fail", "open", "open"),
            Step(5, "due", True, "half_open"),
            Step(5, "probe_fail", None, "open"),  # still down: not announced again
            Step(14.9, "due", False, "open"),
            Step(15, "due", True, "half_open"),
            Step(15, "probe_fail", None, "open"),
            Step(34.9, "due", False, "open"),
            Step(35, "due", True, "half_open"),
            Step(35, "probe_fail", None, "open"),
            Step(64.9, "due", False, "open"),
            Step(65, "due", True, "half_open"),
            Step(65, "probe_fail", None, "open"),
            Step(94.9, "due", False, "open"),
            Step(95, "due", True, "half_open"),
            Step(96, "probe_ok", "closed", "closed"),
        ],
    ),
    "backoff restarts after recovery": (
        CircuitBreaker(probe_interval_s=5),
        [
            Step(0, "fail", "open", "open"),
            Step(5, "due", True, "half_open"),
            Step(5, "probe_fail", None, "open"),
            Step(15, "due", True, "half_open"),
            Step(15, "probe_ok", "closed", "closed"),
            Step(20, "fail", "open", "open"),
            Step(24.9, "due", False, "open"),
            Step(25, "due", True, "half_open"),
        ],
    ),
    "a real success while open closes it": (
        CircuitBreaker(),
        [
            Step(0, "fail", "open", "open"),
            Step(1, "ok", "closed", "closed"),
            Step(2, "allow", True, "closed"),
        ],
    ),
    "late failures while open or probing change nothing": (
        CircuitBreaker(probe_interval_s=5),
        [
            Step(0, "fail", "open", "open"),
            Step(1, "fail", None, "open"),
            Step(4.9, "due", False, "open"),  # the late failure did not push the probe back
            Step(5, "due", True, "half_open"),
            Step(5.5, "fail", None, "half_open"),
        ],
    ),
    "a probe that never reports is asked for again": (
        CircuitBreaker(probe_interval_s=5, probe_timeout_s=10),
        [
            Step(0, "fail", "open", "open"),
            Step(5, "due", True, "half_open"),
            Step(14.9, "due", False, "half_open"),
            Step(15, "due", True, "half_open"),
            Step(16, "probe_ok", "closed", "closed"),
        ],
    ),
    "a probe result after traffic already closed it is ignored": (
        CircuitBreaker(),
        [
            Step(0, "fail", "open", "open"),
            Step(5, "due", True, "half_open"),
            Step(5.5, "ok", "closed", "closed"),
            Step(6, "probe_fail", None, "closed"),
            Step(6.1, "allow", True, "closed"),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script(name: str) -> None:
    breaker, steps = SCRIPTS[name]
    for i, step in enumerate(steps):
        got = run(breaker, step)
        assert got == step.expect, f"step {i} {step}: got {got!r}"
        assert breaker.state == step.state, f"step {i} {step}: state {breaker.state}"


def test_transitions_carry_reason_and_history() -> None:
    breaker = CircuitBreaker(probe_interval_s=1)
    opened = breaker.record_failure(10.0, "auth_failed")
    assert opened == Transition("closed", "open", "auth_failed", 10.0)
    assert not opened.available
    assert breaker.probe_due(11.0)
    assert breaker.record_probe(11.5, False, "engine_timeout") is None
    assert breaker.last_reason == "engine_timeout"
    assert breaker.probe_due(13.5)
    closed = breaker.record_probe(14.0, True)
    assert closed is not None and closed.available and closed.reason == "probe_ok"
    assert [(t.from_state, t.to_state) for t in breaker.history] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"probe_interval_s": 0},
        {"probe_interval_s": 10, "max_probe_interval_s": 5},
        {"backoff_factor": 0.5},
        {"probe_timeout_s": 0},
    ],
)
def test_bad_settings_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["fail", "ok", "probe_ok", "probe_fail", "due", "allow"]),
        st.floats(min_value=0, max_value=50, allow_nan=False),
    ),
    max_size=60,
)


@given(EVENTS)
def test_invariants(events: list[tuple[str, float]]) -> None:
    """Any event order: traffic only when closed, returns only on availability changes, time order kept."""
    breaker = CircuitBreaker(failure_threshold=2, probe_interval_s=1, max_probe_interval_s=8)
    now = 0.0
    for op, dt in events:
        now += dt
        was_available = breaker.state == "closed"
        result = run(breaker, Step(now, op, None, ""))
        assert breaker.allow(now) == (breaker.state == "closed")
        if op not in ("due", "allow"):
            if result is None:
                assert (breaker.state == "closed") == was_available
            else:
                assert (result == "closed") != was_available
                assert result == breaker.state
        if breaker.state == "open":
            assert breaker.next_probe_at is not None
            assert breaker.next_probe_at - now <= breaker.max_probe_interval_s
    times = [t.at for t in breaker.history]
    assert times == sorted(times)
