"""``/status`` (a live page), ``/api/status`` (its JSON) and ``/api/status/events`` (server-sent events).

The page loads once and then follows ``/api/status/events``: one ``status`` event at once, then one
whenever something it shows changed (a sample, an incident, an alert), and at least every
``PUSH_EVERY_S`` (workers' RTF and queues move with every heartbeat). No reload, no polling in the
browser; ``EventSource`` reconnects by itself when the gateway restarts. Like ``/metrics``, these
need no token: they show no session's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from stream_server.http.ports import HealthHost
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.status_view import HubView, build_status

STATIC = Path(__file__).resolve().parent / "static"
PUSH_EVERY_S = 2.0


def router(hub: HealthHost, monitor: Monitor | None = None) -> APIRouter:
    r = APIRouter()
    view = HubView(hub)

    def snapshot(monitor: Monitor) -> dict[str, object]:
        return build_status(monitor, view, hub.metrics, monitor.clock())

    def not_running() -> JSONResponse:
        body = {"error": {"code": "monitoring_off", "message": "monitoring is not running in this gateway"}}
        return JSONResponse(body, status_code=503)

    @r.get("/status", include_in_schema=False)
    async def status_page() -> FileResponse:
        return FileResponse(STATIC / "status.html", headers={"Cache-Control": "no-cache"})

    @r.get("/status/status.js", include_in_schema=False)
    async def status_script() -> FileResponse:
        return FileResponse(STATIC / "status.js", media_type="text/javascript")

    @r.get("/api/status")
    async def status_json() -> Response:
        """Workers, tiers and breakers, persisted uptime, the month's budget, TTFA, incidents."""
        if monitor is None:
            return not_running()
        return JSONResponse(snapshot(monitor))

    @r.get("/api/status/events")
    async def status_events(request: Request) -> Response:
        """Server-sent events: ``event: status`` with the same JSON as ``/api/status``."""
        if monitor is None:
            return not_running()
        live = monitor

        async def stream() -> AsyncIterator[str]:
            with live.changes.subscribe() as changed:
                while not await request.is_disconnected():
                    changed.clear()
                    yield f"event: status\ndata: {json.dumps(snapshot(live), separators=(',', ':'))}\n\n"
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PUSH_EVERY_S):
                            await changed.wait()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return r
