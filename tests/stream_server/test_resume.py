"""The replay log behind websocket resume."""

from __future__ import annotations

import pytest

from stream_server.core.resume import (
    ReplayLog,
    ResumeRequest,
    ResumeThrottle,
    new_token,
    parse_resume,
    token_matches,
)


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
        ("abc123", "7", ResumeRequest("abc123", 7, "tok")),
        ("abc123", None, None),
        (None, "7", None),
        ("abc123", "-1", None),
        ("abc123", "x", None),
        ("a/b", "1", None),
        ("abc", "1" * 13, None),
    ],
)
def test_parse_resume(session_id: str | None, heard: str | None, expected: ResumeRequest | None) -> None:
    assert parse_resume(session_id, heard, "tok") == expected


def test_a_resume_token_is_long_random_kept_as_a_digest_and_matched_exactly() -> None:
    token, digest = new_token()
    other, _ = new_token()
    assert len(token) >= 32 and token != other  # 24 random bytes, url-safe base64
    assert digest != token.encode() and len(digest) == 32  # SHA-256, not the token
    assert token_matches(digest, token)
    assert (
        not token_matches(digest, other) and not token_matches(digest, "") and not token_matches(None, token)
    )
    assert token not in repr(parse_resume("abc", "1", token))  # never printed


def test_failed_resumes_are_throttled_per_peer_until_the_window_passes() -> None:
    throttle = ResumeThrottle(max_failures=3, window_s=60.0)
    for i in range(3):
        assert throttle.allowed("10.0.0.1", float(i))
        throttle.failed("10.0.0.1", float(i))
    assert not throttle.allowed("10.0.0.1", 10.0)
    assert throttle.allowed("10.0.0.2", 10.0)  # another peer is not held up
    assert throttle.allowed("10.0.0.1", 60.5)  # the first failure left the window


def test_the_throttle_holds_a_bounded_number_of_peers() -> None:
    throttle = ResumeThrottle(max_failures=1, window_s=60.0, max_peers=10)
    for i in range(100):
        throttle.failed(f"peer-{i}", 1.0)
    assert len(throttle._failures) <= 10
