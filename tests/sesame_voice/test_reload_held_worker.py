"""A drained worker that will not exit does not stall a reload: ``up`` SIGKILLs it at its bound.

The bound of one retired process is SESAME_DRAIN_TIMEOUT_MS + 10 s (``UpConfig.stop_timeout_s``;
11 s here, with a 1 s drain). The worker's exit is held by a real blocking call
(``hold_exit/sitecustomize.py``: an exit handler waiting for ever), so its drain finishes and its
process stays. The reload must still complete within ``BOUND`` (24 x the suite's time unit) with
every worker and the gateway new, the step saying the old worker was SIGKILLed, the kill logged
(``child_retire_killed``, after the worker's own stack dump on SIGUSR1) and counted in the
supervisor's state file (``retire_kills``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from broker.launcher import free_port
from tests.conftest import T
from tests.support.localstack import REPO, Proc

BOUND = 24 * T
HOLD = Path(__file__).resolve().parent / "hold_exit"


def state(run_dir: Path, port: int) -> dict[str, object]:
    return dict(json.loads((run_dir / f"supervisor-{port}.json").read_text()))


def pids(run_dir: Path, port: int) -> dict[str, int]:
    children = state(run_dir, port)["children"]
    assert isinstance(children, list)
    return {str(c["name"]): int(c["pid"]) for c in children if c["pid"]}


def test_a_worker_held_at_exit_is_killed_at_its_bound_and_the_reload_completes(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "SESAME_PORT": str(port),
        "SESAME_RUN_DIR": str(tmp_path),
        "SESAME_STATE_DIR": str(tmp_path / "state"),
        "SESAME_ENGINE": "espeak-ng",
        "SESAME_MQTT_URL": "",
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_DRAIN_TIMEOUT_MS": "1000",
        "SESAME_TEST_HOLD_EXIT": "1",
        "PYTHONPATH": os.pathsep.join([str(HOLD), os.environ.get("PYTHONPATH", str(REPO))]),
    }
    up = Proc(["up", "--workers", "1"], env, "up")
    try:
        up.wait_event("gateway_listening", 12 * T)
        up.wait_for(lambda e: e.get("event") == "worker_ready" and e.get("worker_id") == "worker-1", 12 * T)
        before = pids(tmp_path, port)
        reload = subprocess.run(
            [sys.executable, "-m", "sesame_voice.cli", "reload", "--timeout", str(BOUND)],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=BOUND + 5 * T,
            check=False,
        )
        after = pids(tmp_path, port)
        kills = state(tmp_path, port)["retire_kills"]
    finally:
        up.stop(20)
    printed = reload.stdout + reload.stderr
    assert reload.returncode == 0, printed
    assert "worker-1 (pid" in printed and "SIGKILLed" in printed, printed
    assert "reload done in" in printed, printed
    assert set(after) == {"broker", "worker-1-r1", "gateway-r1"}
    assert not {before["worker-1"], before["gateway"]} & {after["worker-1-r1"], after["gateway-r1"]}
    assert kills == {"worker": 1}
    killed = [e for e in up.events() if e.get("event") == "child_retire_killed"]
    assert [e["child"] for e in killed] == ["worker-1"]
    stopped = [
        e for e in up.events() if e.get("event") == "worker_stopped" and e.get("worker_id") == "worker-1"
    ]
    assert stopped, "the held worker drained and stopped before its exit was held"
    assert any("most recent call first" in line for line in up.lines)  # its stacks, on SIGUSR1
