"""Health and monitoring: ``/health`` (liveness), ``/ready``, ``/metrics``, the voice-metrics API."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from stream_server.http.ports import HealthHost
from stream_server.hub.shutdown import Drainer
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.restarts import SupervisorCollector, read_state

VERSION = "0.1.0"


def router(hub: HealthHost, monitor: Monitor | None = None, drainer: Drainer | None = None) -> APIRouter:
    r = APIRouter()
    started = time.monotonic()
    supervisor_state = Path(hub.config.supervisor_state) if hub.config.supervisor_state else None
    if supervisor_state is not None:
        hub.metrics.registry.register(SupervisorCollector(supervisor_state))

    @r.get("/health")
    async def health() -> dict[str, object]:
        """Liveness: the process is serving."""
        return {"status": "ok", "version": VERSION, "uptime_s": round(time.monotonic() - started, 1)}

    @r.get("/ready")
    async def ready() -> JSONResponse:
        """Ready when at least one voice path can speak and the gateway is not draining; under
        `sesame-voice up`, with the supervisor's restarts."""
        state = hub.readiness()
        body = state.to_json()
        draining = drainer is not None and drainer.draining
        if draining:
            body["ready"], body["draining"] = False, True
        supervisor = read_state(supervisor_state)
        if supervisor is not None:
            body["supervisor"] = supervisor
        return JSONResponse(body, status_code=200 if state.ready and not draining else 503)

    @r.get("/metrics")
    async def metrics() -> Response:
        if not hub.config.metrics_enabled:
            return Response("metrics disabled (SESAME_METRICS_ENABLED=false)\n", status_code=404)
        return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4")

    @r.get("/api/monitoring/voice-metrics")
    async def voice_metrics() -> dict[str, object]:
        state = hub.readiness()
        primary = [w for w in state.workers if w.alive and w.engine == "bark"]
        loaded = any(w.state == "ready" for w in primary)
        status = "healthy" if loaded else ("degraded" if state.ready else "down")
        model = next((w.model for w in primary if w.model), "suno/bark-small")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return hub.metrics.voice_metrics(
            status=status,
            model_loaded=loaded,
            model_name=model,
            memory_mb=rss_mb,
            persisted=monitor.figures if monitor is not None else None,
        )

    return r
