"""Prometheus series of monitoring: workers' own figures, probes, uptime, alerts.

Registered on the gateway's one ``CollectorRegistry`` (``Metrics.monitor``). Every name here is in
docs/monitoring.md, and the Grafana dashboard (deploy/grafana-dashboard.json) and the alert rules
(deploy/prometheus-rules.yaml) use only names exported here or in metrics.py (a test checks it);
``sesame_restarts_total{role,reason}`` is the supervisor's (issue 9: its collector reads the
supervisor's state file), not counted here.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker.messages import Heartbeat

PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
TTFA_WINDOW_S = 3600.0


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        w = ["worker"]
        self.worker_up = Gauge("sesame_worker_up", "1 while a worker is alive and ready", w, registry=r)
        self.worker_rtf = Gauge(
            "sesame_worker_rtf", "Worker's measured real-time factor (compute s per audio s)", w, registry=r
        )
        self.worker_queue = Gauge("sesame_worker_queue_depth", "Jobs queued on a worker", w, registry=r)
        self.worker_in_flight = Gauge(
            "sesame_worker_jobs_in_flight", "Jobs running on a worker", w, registry=r
        )
        self.worker_batch = Gauge("sesame_worker_batch_size", "Size of a worker's last batch", w, registry=r)
        self.worker_load = Gauge(
            "sesame_worker_model_load_seconds", "Seconds the worker took to load its model", w, registry=r
        )
        self.worker_stage = Gauge(
            "sesame_worker_stage_seconds",
            "Wall seconds of each Bark stage in the worker's last batch",
            ["worker", "stage"],
            registry=r,
        )
        self.probes = Counter(
            "sesame_probes_total", "Health samples by path and outcome", ["path", "outcome"], registry=r
        )
        self.probe_latency = Histogram(
            "sesame_probe_latency_seconds",
            "Latency of a probe's real synthesis, by path",
            ["path"],
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.path_up = Gauge(
            "sesame_path_up", "1 when the path's last health sample was ok", ["path"], registry=r
        )
        self.uptime = Gauge(
            "sesame_uptime_percent", "Persisted uptime by path and window", ["path", "window"], registry=r
        )
        self.downtime_month = Gauge(
            "sesame_downtime_month_minutes", "Minutes down this calendar month (UTC)", ["path"], registry=r
        )
        self.downtime_budget = Gauge(
            "sesame_downtime_budget_minutes",
            "Minutes of downtime this month allows at the target",
            registry=r,
        )
        self.alerts = Counter(
            "sesame_alerts_total",
            "Alert notices by kind and state (firing, resolved)",
            ["kind", "state"],
            registry=r,
        )
        self.alerts_active = Gauge("sesame_alerts_active", "Open incidents", registry=r)
        self.alert_deliveries = Counter(
            "sesame_alert_deliveries_total", "Webhook deliveries by outcome", ["outcome"], registry=r
        )
        self.spoken: dict[str, int] = {}  # sentences by the engine that spoke them ("text": none could)
        # (wall time, TTFA ms, engine) of the last hour: the status page's chart
        self.ttfa_recent: deque[tuple[float, float, str]] = deque(maxlen=20_000)

    def heartbeat(self, hb: Heartbeat, up: bool) -> None:
        wid = hb.worker_id
        self.worker_up.labels(wid).set(1 if up else 0)
        self.worker_rtf.labels(wid).set(hb.rtf)
        self.worker_queue.labels(wid).set(hb.queue_depth)
        self.worker_in_flight.labels(wid).set(hb.jobs_in_flight)
        self.worker_batch.labels(wid).set(hb.batch_size)
        self.worker_load.labels(wid).set(hb.model_load_s)
        for stage, ms in hb.stage_ms().items():
            self.worker_stage.labels(wid, stage).set(ms / 1000.0)

    def worker_down(self, worker_id: str) -> None:
        self.worker_up.labels(worker_id).set(0)

    def sample(self, path: str, ok: bool, latency_s: float | None) -> None:
        self.probes.labels(path, "ok" if ok else "failed").inc()
        self.path_up.labels(path).set(1 if ok else 0)
        if latency_s is not None:
            self.probe_latency.labels(path).observe(latency_s)

    def spoke(self, engine: str) -> None:
        self.spoken[engine] = self.spoken.get(engine, 0) + 1

    def ttfa(self, now: float, ms: float, engine: str) -> None:
        self.ttfa_recent.append((now, ms, engine))
        while self.ttfa_recent and self.ttfa_recent[0][0] < now - TTFA_WINDOW_S:
            self.ttfa_recent.popleft()
