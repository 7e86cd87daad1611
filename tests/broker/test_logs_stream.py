"""Log lines go to sys.stderr as it is when they are written (broker/logs.py)."""

from __future__ import annotations

import io
import sys

import pytest

from broker import logs


def test_a_closed_stderr_left_by_an_earlier_caller_does_not_break_later_log_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`up`'s main configures logging in-process (a test's capsys stream); once that stream is
    closed, a later log line must go to the stderr of its own time, not raise on the closed one."""
    gone = io.StringIO()
    monkeypatch.setattr(sys, "stderr", gone)
    logs.configure("INFO", json=True)
    gone.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    logs.get("test").info("after_close", n=1)
    assert '"event": "after_close"' in now.getvalue()
    monkeypatch.undo()
    logs.configure("INFO", json=True)  # as tests/conftest.py leaves it
