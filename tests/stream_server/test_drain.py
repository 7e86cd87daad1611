"""The drain core: who is told to reconnect, and when. Pure, no clock."""

from __future__ import annotations

import pytest

from stream_server.core.shutdown import DrainCore


def test_nothing_happens_before_the_drain_starts() -> None:
    d = DrainCore()
    d.activity("a", busy=False, now=0.0)
    assert d.tick(100.0) == []
    assert d.next_deadline() is None
    assert not d.draining and not d.finished


def test_an_idle_quiet_session_is_told_at_once_a_busy_one_when_its_turn_ends() -> None:
    d = DrainCore(timeout_s=30.0, quiet_s=1.0)
    d.activity("idle", busy=False, now=0.0)
    d.activity("busy", busy=True, now=9.5)
    assert d.start(10.0) == ["idle"]
    assert d.next_deadline() == pytest.approx(40.0)
    d.activity("busy", busy=False, now=12.0)  # its turn ended
    assert d.next_deadline() == pytest.approx(13.0)
    assert d.tick(12.5) == []
    assert d.tick(13.0) == ["busy"]
    assert d.tick(14.0) == []  # each once
    assert d.finished


def test_a_session_that_just_connected_gets_its_quiet_time_to_speak() -> None:
    d = DrainCore(quiet_s=1.0)
    d.activity("new", busy=False, now=10.0)
    assert d.start(10.2) == []
    d.activity("new", busy=True, now=10.4)  # its first turn arrived: served here
    assert d.tick(11.5) == []


def test_the_timeout_tells_everyone() -> None:
    d = DrainCore(timeout_s=5.0)
    d.activity("a", busy=True, now=0.0)
    d.activity("b", busy=True, now=0.0)
    d.start(1.0)
    assert d.tick(5.9) == []
    assert sorted(d.tick(6.0)) == ["a", "b"]
    assert d.next_deadline() is None


def test_closed_sessions_are_forgotten_and_no_sessions_is_finished() -> None:
    d = DrainCore()
    d.activity("a", busy=True, now=0.0)
    d.start(0.0)
    assert not d.finished
    d.closed("a")
    assert d.finished
    assert d.next_deadline() is None


def test_start_twice_keeps_the_first_start() -> None:
    d = DrainCore(timeout_s=5.0)
    d.activity("a", busy=True, now=0.0)
    d.start(1.0)
    d.start(4.0)
    assert d.tick(6.0) == ["a"]


@pytest.mark.parametrize(
    ("sessions", "told_at", "now", "over"),
    [
        ([], None, 0.5, False),  # a just-accepted connection gets quiet_s to become a session
        ([], None, 1.0, True),
        (["a"], None, 10.0, False),  # a busy session keeps the drain going ...
        (["a"], None, 37.0, True),  # ... until timeout_s + grace_s
        (["a"], 5.0, 6.9, False),  # told: grace_s to go
        (["a"], 5.0, 7.0, True),
    ],
)
def test_when_the_drain_is_over(sessions: list[str], told_at: float | None, now: float, over: bool) -> None:
    d = DrainCore(timeout_s=35.0, quiet_s=1.0, grace_s=2.0)
    for sid in sessions:
        d.activity(sid, busy=True, now=0.0)
    d.start(0.0)
    if told_at is not None:
        for sid in sessions:
            d.activity(sid, busy=False, now=told_at - 1.0)
        assert d.tick(told_at) == sessions
    assert d.over(now) is over


def test_not_draining_is_never_over() -> None:
    d = DrainCore()
    assert d.ends_at() is None and not d.over(1e9)
