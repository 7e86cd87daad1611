"""The worker's liveness file, for health checks that cannot speak MQTT (compose, Kubernetes).

Every heartbeat the worker rewrites ``SESAME_HEALTH_FILE`` (atomically) with its state, the time
and its heartbeat interval. ``sesame-voice worker --check-health`` reads it and exits 0 when the
heartbeat loop is alive (the file is younger than ``MISSED`` intervals, plus one second of slack)
and the worker can work or is getting there (loading, warming, ready, draining); 1 when it is stale
(a frozen process), missing, or says ``unavailable``. The reason is printed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MISSED = 3
HEALTHY_STATES = ("loading", "warming", "ready", "draining")


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str


def write(path: Path, *, state: str, at: float, interval_s: float, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    tmp.write_text(json.dumps({"state": state, "at": at, "interval_s": interval_s, "pid": pid}))
    os.replace(tmp, path)


def check(path: Path, now: float) -> Health:
    try:
        data = json.loads(path.read_text())
        state, at, interval = str(data["state"]), float(data["at"]), float(data["interval_s"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Health(False, f"no readable health file at {path}: {exc}")
    age = now - at
    if age > MISSED * interval + 1.0:
        return Health(False, f"last heartbeat {age:.1f}s ago (interval {interval}s): hung or stopped")
    if state not in HEALTHY_STATES:
        return Health(False, f"worker is {state}")
    return Health(True, f"worker is {state}, last heartbeat {age:.1f}s ago")
