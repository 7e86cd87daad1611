"""Crash-loop events from the supervisor's state (table-driven, no files)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from stream_server.hub.hub import Hub
from stream_server.monitoring.crash_watch import CrashLoop, CrashWatch
from stream_server.monitoring.status_view import HubView


def state(looping: bool, count: int = 5) -> dict[str, object]:
    return {
        "restarts": [
            {"role": "worker", "reason": "exit_1", "count": count},
            {"role": "worker", "reason": "hung", "count": 1},
            {"role": "gateway", "reason": "exit_1", "count": 1},
        ],
        "children": [
            {"name": "worker-1", "role": "worker", "running": True, "crash_loop": looping},
            {"name": "gateway", "role": "gateway", "running": True, "crash_loop": False},
        ],
    }


def test_a_crash_loop_is_news_once_and_so_is_its_end() -> None:
    watch = CrashWatch()
    assert watch.update(state(False, 1)) == []
    assert watch.update(state(True)) == [CrashLoop("worker", "worker-1", True, 6, "exit_1")]
    assert watch.update(state(True, 7)) == []
    assert watch.update(state(False, 7)) == [CrashLoop("worker", "worker-1", False, 8, "exit_1")]


def test_unreadable_or_malformed_states_are_no_news() -> None:
    watch = CrashWatch()
    watch.update(state(True))
    for bad in (None, {"error": "unreadable"}, [], "x", {"children": "nope", "restarts": 3}):
        assert watch.update(bad) == []
    assert watch.looping == {"worker-1"}
    odd = {"children": [{"name": 1}, {"name": "w", "role": "worker", "crash_loop": "yes"}], "restarts": [7]}
    assert watch.update(odd) == []


def test_the_hub_view_reads_the_supervisors_state_file(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.json"
    path.write_text(json.dumps(state(True)))
    view = HubView(cast(Hub, SimpleNamespace(config=SimpleNamespace(supervisor_state=str(path)))))
    assert CrashWatch().update(view.supervisor_state()) == [
        CrashLoop("worker", "worker-1", True, 6, "exit_1")
    ]
    path.write_text("{half a file")
    assert view.supervisor_state() is None
    assert HubView(cast(Hub, SimpleNamespace(config=SimpleNamespace()))).supervisor_state() is None
