"""The scheduler's actions and heartbeats, as the monitor hears them (table-driven, no I/O)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from broker.messages import Heartbeat
from stream_server.core.actions import (
    CancelJob,
    Completed,
    FailedOver,
    GiveUp,
    SendJob,
    Sentence,
    TierChanged,
    WorkerChanged,
)
from stream_server.core.workers import WorkerChange
from stream_server.monitoring.hooks import observe, path_of
from stream_server.monitoring.monitor import Monitor

LISTENER = Sentence("s1", 0, 0, "Hello.", "maya")
PRELOAD = Sentence("preload", 0, 0, "Hello.", "maya", background=True)
BEAT = Heartbeat("bark-1", 1, "ready", "bark", "m", 1, 0.0, 0.5)


class Heard:
    """Records the monitor events ``observe`` makes (the real ``Monitor`` methods' names)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, (*args, *kwargs.values())))


@pytest.mark.parametrize(
    ("item", "heard"),
    [
        (SendJob("j1", "bark-1", LISTENER, 10.0), [("listener_needs", ("workers",))]),
        (SendJob("j1", "bark-1", PRELOAD, 10.0), []),
        (Completed(LISTENER, "j1", "bark", "workers", 0.2), [("sentence", ("workers", True))]),
        (Completed(LISTENER, "j1", "espeak-ng", "espeak-ng", 0.1), [("sentence", ("espeak-ng", True))]),
        (Completed(PRELOAD, "j1", "bark", "workers", 0.2), [("sentence", ("workers", True))]),
        (FailedOver(LISTENER, "bark", "espeak-ng", "worker_dead"), [("sentence", ("workers", False))]),
        (FailedOver(LISTENER, "edge-tts", "espeak-ng", "timeout"), [("sentence", ("edge-tts", False))]),
        (TierChanged("edge-tts", False, "timeout"), [("tier_changed", ("edge-tts", False, "timeout"))]),
        (
            WorkerChanged(WorkerChange("bark-1", False, "last_will")),
            [("worker_changed", ("bark-1", False, "last_will"))],
        ),
        (BEAT, [("heartbeat", (BEAT, True))]),
        (GiveUp(LISTENER, "no_voice_available"), []),
        (CancelJob("j1", "workers", "bark-1", "s1"), []),
    ],
)
def test_observe(item: Any, heard: list[tuple[str, tuple[Any, ...]]]) -> None:
    monitor = Heard()
    observe(cast(Monitor, monitor), item, worker_up=True)
    assert monitor.calls == heard


def test_path_of() -> None:
    assert [path_of(x) for x in ("bark", "workers", "espeak-ng", "text")] == [
        "workers",
        "workers",
        "espeak-ng",
        "text",
    ]
