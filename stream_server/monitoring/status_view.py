"""What ``/status`` and ``/api/status`` show, as one JSON document (docs/monitoring.md lists every field).

``HubView`` reads the gateway's live state (workers from heartbeats, tiers and their breakers);
``build_status`` joins it with the monitor's persisted figures, recent incidents, the last hour of
time-to-first-audio and the fallbacks by engine. Pure functions of what they are given.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stream_server.config import GatewayConfig
from stream_server.core.actions import Action, TierChanged
from stream_server.core.scheduler import Scheduler
from stream_server.hub.local_tiers import LocalTiers
from stream_server.monitoring.gateway_view import GatewayView
from stream_server.monitoring.metrics import Metrics, percentile
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.probes import PRIMARY

TTFA_BUCKET_S = 30.0


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    state: str
    alive: bool
    engine: str
    model: str
    rtf: float
    queue_depth: int
    jobs_in_flight: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class TierRow:
    tier: str
    configured: bool
    available: bool
    breaker: str  # closed, open, half_open ("-" for the worker pool)
    reason: str


class ViewedGateway(Protocol):
    """What ``HubView`` reads of the gateway (the hub, built in stream_server/main.py)."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def local(self) -> LocalTiers: ...
    def feed(self, work: Iterable[Action]) -> None: ...


class StatusSource(GatewayView, Protocol):
    """What the status document reads of the gateway besides what the monitor reads."""

    def workers(self) -> list[WorkerRow]: ...
    def tiers(self) -> list[TierRow]: ...


class HubView:
    """The monitor's and the status page's window on the gateway (``Hub``)."""

    def __init__(self, hub: ViewedGateway) -> None:
        self.hub = hub

    def ready_workers(self) -> list[tuple[str, bool]]:
        now = self.hub.clock()
        return [
            (w.worker_id, bool(w.assigned) or w.queue_depth > 0)
            for w in self.hub.scheduler.registry.workers.values()
            if w.ready(now)
        ]

    def busy_tiers(self) -> set[str]:
        return {
            task.attempt.tier
            for task in self.hub.scheduler.tasks.values()
            if task.attempt is not None and task.attempt.worker_id is None and not task.sentence.background
        }

    def supervisor_state(self) -> object:
        # SESAME_SUPERVISOR_STATE (issue 9's setting, read by GatewayConfig when it has it)
        path = getattr(self.hub.config, "supervisor_state", None)
        if not path:
            return None
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None  # being rewritten, or gone: no news this round

    def tier_probe_failed(self, tier: str, reason: str) -> None:
        breaker = self.hub.scheduler.breakers.get(tier)
        if breaker is None:
            return
        transition = breaker.record_failure(self.hub.clock(), f"health_probe:{reason}")
        if transition is not None:  # it opened: the same event as a listener's failure
            self.hub.feed([TierChanged(tier, False, transition.reason)])

    def workers(self) -> list[WorkerRow]:
        return [
            WorkerRow(
                w.worker_id,
                w.state,
                w.alive,
                w.engine,
                w.model,
                w.rtf,
                w.queue_depth,
                w.jobs_in_flight,
                w.reason,
            )
            for w in sorted(self.hub.scheduler.registry.workers.values(), key=lambda w: w.worker_id)
        ]

    def tiers(self) -> list[TierRow]:
        hub = self.hub
        rows = []
        for tier in hub.config.failover.tiers:
            if tier == PRIMARY:
                up = hub.scheduler.registry.ready_count(hub.clock()) > 0
                rows.append(TierRow(tier, True, up, "-", "" if up else "no worker is ready"))
                continue
            breaker = hub.scheduler.breakers[tier]
            configured = tier in hub.local.engines
            reason = breaker.last_reason if breaker.state != "closed" else ""
            rows.append(
                TierRow(tier, configured, configured and breaker.state == "closed", breaker.state, reason)
            )
        return rows


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def ttfa_series(metrics: Metrics, now: float) -> list[dict[str, object]]:
    """The last hour of time to first audio in 30 s buckets: p50, p95 and count per bucket."""
    buckets: dict[int, list[float]] = {}
    for t, ms, _engine in metrics.monitor.ttfa_recent:
        if t >= now - 3600:
            buckets.setdefault(int(t // TTFA_BUCKET_S), []).append(ms)
    return [
        {
            "at": iso(b * TTFA_BUCKET_S),
            "p50": round(percentile(v, 50), 1),
            "p95": round(percentile(v, 95), 1),
            "n": len(v),
        }
        for b, v in sorted(buckets.items())
    ]


def voice_state(monitor: Monitor, tiers: list[TierRow], engines: list[str]) -> dict[str, object]:
    """Which voice Maya speaks with now, and why (the main page's notice uses it too)."""
    primary = next((t for t in tiers if t.tier == PRIMARY), None)
    primary_up = bool(primary and primary.available) and monitor.primary_up is not False
    speaking = PRIMARY if primary_up else next((t.tier for t in tiers if t.available), "text")
    reason = ""
    if not primary_up:
        reason = (primary.reason if primary and primary.reason else "") or monitor.primary_reason
    return {
        "primaryUp": primary_up,
        "speakingWith": speaking,
        "reason": reason,
        "primaryEngines": engines or ["bark"],
    }


def build_status(monitor: Monitor, view: StatusSource, metrics: Metrics, now: float) -> dict[str, object]:
    tiers = view.tiers()
    figures = monitor.figures
    voice = voice_state(monitor, tiers, sorted({w.engine for w in view.workers() if w.alive}))
    status = "healthy" if voice["primaryUp"] else ("degraded" if voice["speakingWith"] != "text" else "down")
    return {
        "at": iso(now),
        "status": status,
        "voice": voice,
        "workers": [
            {
                "id": w.worker_id,
                "state": w.state,
                "alive": w.alive,
                "engine": w.engine,
                "model": w.model,
                "rtf": w.rtf,
                "queueDepth": w.queue_depth,
                "jobsInFlight": w.jobs_in_flight,
                "restarts": monitor.restarts.get(w.worker_id, 0),
                "reason": w.reason,
            }
            for w in view.workers()
        ],
        "tiers": [
            {
                "tier": t.tier,
                "configured": t.configured,
                "available": t.available,
                "breaker": t.breaker,
                "reason": t.reason,
                "lastProbe": _last_probe(monitor, t.tier),
            }
            for t in tiers
        ],
        "uptime": figures.uptime,
        "month": {**figures.month, "target": monitor.config.uptime_target},
        "ttfa": ttfa_series(metrics, now),
        # sentences spoken by a fallback engine (or by none: "text"), and moves between attempts
        "fallbacks": {e: n for e, n in sorted(metrics.monitor.spoken.items()) if e != "bark"},
        "fallbackMoves": dict(sorted(metrics.fallback_by_engine.items())),
        "incidents": [
            {"at": iso(i.at), "kind": i.kind, "path": i.path, "text": i.text} for i in monitor.recent[:30]
        ],
        "alerts": {
            "webhook": monitor.sender is not None,
            "open": [{"key": k, "since": iso(s), "summary": m} for k, s, m in monitor.alerts.active()],
        },
    }


def _last_probe(monitor: Monitor, path: str) -> dict[str, object] | None:
    if path not in monitor.paths:
        return None
    sample = monitor.probes.last(path)
    if sample is None:
        return None
    latency = None if sample.latency_s is None else round(sample.latency_s * 1000.0, 1)
    return {"at": iso(sample.at), "ok": sample.ok, "latencyMs": latency, "reason": sample.reason}
