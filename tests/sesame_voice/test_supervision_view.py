"""The gateway's view of the supervisor's state file: /ready's ``supervisor`` and the restart metric."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from sesame_voice.supervisor import Policy, SupervisorCore
from stream_server.monitoring.restarts import SupervisorCollector, read_state, restart_counts


def written_state(tmp_path: Path) -> Path:
    core = SupervisorCore(Policy(), rng=lambda: 0.5)
    core.add("worker-1", "worker")
    core.started("worker-1", 10, 0.0, worker_id="worker-1")
    core.exited("worker-1", -9, 1.0)
    core.tick(2.0)  # the restart is due: counted
    core.add("worker-1-r1", "worker", reason="reload")
    path = tmp_path / "supervisor.json"
    path.write_text(json.dumps(core.snapshot()))
    return path


def test_the_state_file_round_trips_to_counts(tmp_path: Path) -> None:
    state = read_state(written_state(tmp_path))
    assert state is not None
    assert restart_counts(state) == [("worker", "exited", 1), ("worker", "reload", 1)]
    assert state["restarts_total"] == 2


def test_metrics_render_sesame_restarts_total(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(written_state(tmp_path)))
    text = generate_latest(registry).decode()
    assert 'sesame_restarts_total{reason="exited",role="worker"} 1.0' in text
    assert 'sesame_restarts_total{reason="reload",role="worker"} 1.0' in text


def test_unsupervised_unreadable_and_malformed(tmp_path: Path) -> None:
    assert read_state(None) is None
    missing = read_state(tmp_path / "nope.json")
    assert missing is not None and "unreadable" in str(missing["error"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert "not an object" in str(read_state(tmp_path / "bad.json"))
    assert restart_counts({"restarts": [{"role": 1}, "x", {"role": "w", "reason": "r", "count": 2}]}) == [
        ("w", "r", 2)
    ]
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(tmp_path / "nope.json"))
    assert "sesame_restarts_total{" not in generate_latest(registry).decode()
