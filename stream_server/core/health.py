"""Readiness as a typed value, and the periodic health sample (a core with a deadline). Pure.

``Readiness`` is what ``GET /ready`` answers (``to_json()``) and what the monitoring endpoint reads.
``HealthSampler`` says when the next uptime sample is due (SESAME_HEALTH_CHECK_INTERVAL); the hub
sleeps on it with the other cores' deadlines, so there is no polling loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_server.core.workers import WorkerInfo


@dataclass(frozen=True, slots=True)
class WorkerReadiness:
    worker_id: str
    state: str
    alive: bool
    engine: str
    model: str
    reason: str | None
    queue_depth: int
    rtf: float

    @classmethod
    def of(cls, w: WorkerInfo) -> WorkerReadiness:
        return cls(w.worker_id, w.state, w.alive, w.engine, w.model, w.reason, w.queue_depth, w.rtf)

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "state": self.state,
            "alive": self.alive,
            "engine": self.engine,
            "model": self.model,
            "reason": self.reason,
            "queue_depth": self.queue_depth,
            "rtf": self.rtf,
        }


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool  # at least one voice path can speak
    tiers: tuple[str, ...]
    broker_connected: bool
    workers: tuple[WorkerReadiness, ...]
    sessions: int
    broker_node: str | None = None  # the node of SESAME_MQTT_URL the link is on (None: none)

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "tiers": list(self.tiers),
            "broker_connected": self.broker_connected,
            "broker_node": self.broker_node,
            "workers": [w.to_json() for w in self.workers],
            "sessions": self.sessions,
        }


@dataclass(frozen=True, slots=True)
class SampleHealth:
    """Record an uptime sample now."""


class HealthSampler:
    def __init__(self, interval_s: float, start: float) -> None:
        self.interval_s = interval_s
        self._next = start  # the first sample is taken at once

    def next_deadline(self) -> float:
        return self._next

    def handle_timer(self, now: float) -> list[SampleHealth]:
        if now < self._next:
            return []
        self._next = now + self.interval_s
        return [SampleHealth()]
