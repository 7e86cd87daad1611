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
