"""A cancel token wakes whoever asked to be told, once, and at once when it is already set."""

from __future__ import annotations

from synth_worker.engine import CancelToken


def test_callbacks_run_once_on_cancel_and_at_once_when_already_cancelled() -> None:
    token = CancelToken()
    calls: list[str] = []
    token.on_cancel(lambda: calls.append("first"))
    assert calls == [] and not token.cancelled
    token.cancel()
    token.cancel()  # a second cancel does not call again
    assert calls == ["first"] and token.cancelled
    token.on_cancel(lambda: calls.append("late"))
    assert calls == ["first", "late"]
