"""The replay log behind websocket resume."""

from __future__ import annotations

import pytest

from stream_server.core.resume import ReplayLog, parse_resume


def test_since_gives_exactly_the_frames_not_heard() -> None:
    log: ReplayLog[str] = ReplayLog(limit=5)
    for i in range(3):
        log.append(f"f{i}")
    assert log.since(0) == ["f0", "f1", "f2"]
    assert log.since(2) == ["f2"]
    assert log.since(3) == []
    assert log.since(4) is None  # more than was sent


def test_frames_that_left_the_log_make_the_resume_fail() -> None:
    log: ReplayLog[str] = ReplayLog(limit=3)
    for i in range(5):
        log.append(f"f{i}")
    assert log.first == 2 and log.sent == 5
    assert log.since(1) is None
    assert log.since(2) == ["f2", "f3", "f4"]


def test_a_zero_limit_keeps_nothing() -> None:
    log: ReplayLog[str] = ReplayLog(limit=0)
    log.append("x")
    assert log.since(0) is None and log.since(1) == []


@pytest.mark.parametrize(
    ("session_id", "heard", "expected"),
    [
        ("abc123", "7", ("abc123", 7)),
        ("abc123", None, None),
        (None, "7", None),
        ("abc123", "-1", None),
        ("abc123", "x", None),
        ("a/b", "1", None),
        ("abc", "1" * 13, None),
    ],
)
def test_parse_resume(session_id: str | None, heard: str | None, expected: tuple[str, int] | None) -> None:
    assert parse_resume(session_id, heard) == expected
