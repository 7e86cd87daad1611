"""What the supervisor (``sesame-voice up``) says about restarts, for ``/ready`` and ``/metrics``.

``up`` writes its state atomically to a JSON file and hands the gateway its path as
SESAME_SUPERVISOR_STATE (see sesame_voice/children.py): restarts counted by role and reason, and
each child. A file, not MQTT, so that a restart of the broker is visible too. The gateway reads it
when asked (a few hundred bytes): ``/ready`` shows it under ``supervisor``, and
``SupervisorCollector`` exports ``sesame_restarts_total{role,reason}``. Without the variable (the
gateway run on its own, under systemd or compose) both are absent; a file that cannot be read is
reported as such, never as zero restarts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


def read_state(path: Path | None) -> dict[str, object] | None:
    """The supervisor's state, ``{"error": ...}`` when unreadable, None when not supervised."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"supervisor state {path} unreadable: {exc}"}
    if not isinstance(data, dict):
        return {"error": f"supervisor state {path} is not an object"}
    return data


def restart_counts(state: dict[str, object] | None) -> list[tuple[str, str, int]]:
    """(role, reason, count) from a state; malformed entries are skipped."""
    if not state:
        return []
    entries = state.get("restarts")
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            role, reason, count = entry.get("role"), entry.get("reason"), entry.get("count")
            if isinstance(role, str) and isinstance(reason, str) and isinstance(count, int):
                out.append((role, reason, count))
    return out


class SupervisorCollector(Collector):
    """``sesame_restarts_total{role,reason}``, read from the state file at each scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "sesame_restarts",
            "Child processes restarted by the supervisor (sesame-voice up), by role and reason",
            labels=["role", "reason"],
        )
        for role, reason, count in restart_counts(read_state(self.path)):
            family.add_metric([role, reason], count)
        yield family
