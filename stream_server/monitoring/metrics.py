"""Metrics: Prometheus (/metrics) and the plan's /api/monitoring/voice-metrics JSON.

One ``Metrics`` object per gateway, owning its own CollectorRegistry (no module-level state).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stream_server.monitoring.monitor_series import MonitorMetrics
from stream_server.monitoring.store_writer import Figures

TTFA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class UptimeTracker:
    """Share of health checks in the window (24 h of checks) where a voice path could speak."""

    window: int = 8640
    checks: deque[bool] = field(default_factory=deque)
    primary_checks: deque[bool] = field(default_factory=deque)

    def record(self, any_voice: bool, primary: bool) -> None:
        for q, ok in ((self.checks, any_voice), (self.primary_checks, primary)):
            q.append(ok)
            while len(q) > self.window:
                q.popleft()

    @staticmethod
    def percent(q: deque[bool]) -> float:
        return 100.0 * sum(q) / len(q) if q else 100.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sesame_sentences_total", "Sentences by engine and outcome", ["engine", "outcome"], registry=r
        )
        self.ttfa = Histogram(
            "sesame_time_to_first_audio_seconds",
            "Dispatch to first audio, by engine",
            ["engine"],
            buckets=TTFA_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "sesame_fallbacks_total",
            "Sentences moved to another attempt",
            ["from_engine", "to_engine", "reason"],
            registry=r,
        )
        self.workers_up = Gauge("sesame_workers_ready", "Workers alive and ready", registry=r)
        self.workers_alive = Gauge("sesame_workers_alive", "Workers alive (any state)", registry=r)
        self.tier_available = Gauge(
            "sesame_tier_available", "1 when a tier can take work", ["tier"], registry=r
        )
        self.sessions = Gauge("sesame_active_sessions", "Open sessions", registry=r)
        self.mqtt_node = Gauge(
            "sesame_mqtt_node", "1 for the broker node the link is on, 0 for the others", ["node"], registry=r
        )
        self.mqtt_connects = Counter(
            "sesame_mqtt_connects_total", "Connections made, by broker node", ["node"], registry=r
        )
        self.bad_input = Counter(
            "sesame_bad_input_total", "Refused input by path and code", ["path", "code"], registry=r
        )
        self.dropped = Counter(
            "sesame_dropped_total", "Things dropped under back-pressure", ["what"], registry=r
        )
        self.cache = Counter("sesame_cache_total", "Sentence cache lookups", ["result"], registry=r)
        self.http = Counter("sesame_http_requests_total", "HTTP requests", ["path", "status"], registry=r)
        self.latencies: deque[float] = deque(maxlen=2000)
        self.total = self.ok = self.failed = 0
        self.fallback_by_engine: dict[str, int] = {}
        self.uptime = UptimeTracker()
        self.monitor = MonitorMetrics(r)  # workers' figures, probes, uptime, alerts, restarts

    def sentence(self, engine: str, ok: bool, first_audio_s: float | None) -> None:
        self.requests.labels(engine, "ok" if ok else "failed").inc()
        self.monitor.spoke(engine)
        self.total += 1
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if first_audio_s is not None:
            self.ttfa.labels(engine).observe(first_audio_s)
            self.latencies.append(first_audio_s * 1000.0)
            self.monitor.ttfa(time.time(), first_audio_s * 1000.0, engine)

    def fell_back(self, from_engine: str, to_engine: str, reason: str) -> None:
        self.fallbacks.labels(from_engine, to_engine, reason).inc()
        self.fallback_by_engine[to_engine] = self.fallback_by_engine.get(to_engine, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def voice_metrics(
        self,
        *,
        status: str,
        model_loaded: bool,
        model_name: str,
        memory_mb: float,
        persisted: Figures | None = None,
    ) -> dict[str, object]:
        """The plan's JSON shape (PLAN.md 3.2), camelCase as written there; uptime comes from the
        persisted probe history when there is one (docs/monitoring.md lists every field)."""
        lat = list(self.latencies)
        primary_24h = UptimeTracker.percent(self.uptime.primary_checks)
        service_24h = UptimeTracker.percent(self.uptime.checks)
        windows: dict[str, float | None] = {}
        month: dict[str, float] = {}
        if persisted is not None:
            windows = persisted.uptime.get("workers", {})
            primary_24h = _or(windows.get("24h"), primary_24h)
            service_24h = _or(persisted.uptime.get("service", {}).get("24h"), service_24h)
            month = persisted.month
        return {
            "sesame": {
                "status": status,
                "uptime": round(primary_24h, 3),
                "uptimeWindows": {k: None if v is None else round(v, 3) for k, v in windows.items()},
                "downtimeThisMonth": month,
                "requests": {
                    "total": self.total,
                    "successful": self.ok,
                    "failed": self.failed,
                    "avgLatency": round(sum(lat) / len(lat), 2) if lat else 0.0,
                },
                "model": {"loaded": model_loaded, "name": model_name, "memoryUsageMB": round(memory_mb, 1)},
            },
            "fallbacks": {
                "elevenLabsUsed": self.fallback_by_engine.get("elevenlabs", 0),
                "edgeTtsUsed": self.fallback_by_engine.get("edge-tts", 0),
                "espeakUsed": self.fallback_by_engine.get("espeak-ng", 0),
                "textOnlyFallbacks": self.fallback_by_engine.get("text", 0),
            },
            "performance": {
                "p50Latency": round(percentile(lat, 50), 2),
                "p95Latency": round(percentile(lat, 95), 2),
                "p99Latency": round(percentile(lat, 99), 2),
            },
            "serviceUptime": round(service_24h, 3),
        }


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
