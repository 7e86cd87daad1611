"""HTTP + websocket on one port: the app factory. FastAPI (Starlette) served by uvicorn with the
`websockets` package as its websocket implementation. Why not the bare `websockets` server: it
answers only GET, and we need POST /tts and /v1/audio/speech plus an OpenAPI document on the same
port (see docs/architecture.md).

Every request passes ``guard.Guard`` first (auth before any body is read, body and concurrency
limits). Validation errors say where and what, never echo the input back; a body that cannot be
decoded is a 400 ``bad_json``.

Routes live in modules by concern (``routes_ws``, ``routes_speech``, ``routes_health``,
``routes_status``, ``routes_admin``, ``openai_api``, ``routes_web``), each a ``router(...)`` taking
the port it needs (``http/ports.py``); the monitor and the SIGTERM drainer are passed in by the
composition root.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from broker.errors import Overloaded, ProtocolError
from stream_server.http import (
    openai_api,
    routes_admin,
    routes_health,
    routes_speech,
    routes_status,
    routes_web,
    routes_ws,
)
from stream_server.http.auth import Tokens
from stream_server.http.guard import Guard, GuardSettings
from stream_server.http.ports import GatewayHost
from stream_server.hub.shutdown import Drainer
from stream_server.monitoring.monitor import Monitor

VERSION = routes_health.VERSION


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped, so an error that echoes a client's lone UTF-16 surrogate
    (``"\\ud800"``, valid JSON but not encodable as UTF-8) is still a valid response, not a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def create_app(hub: GatewayHost, monitor: Monitor | None = None, drainer: Drainer | None = None) -> FastAPI:
    """The app; without ``monitor`` the status routes answer 503, without ``drainer`` it never drains."""
    app = FastAPI(
        title="sesame-voice",
        version=VERSION,
        description="Real-time speech for Maya: websocket streaming at /ws (docs/protocol.md), HTTP below.",
        default_response_class=AsciiJSONResponse,
    )

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        if isinstance(exc, Overloaded):  # no room now: a refusal, not bad input
            retry_ms = round(exc.retry_after_s * 1000)
            return AsciiJSONResponse(
                {"error": {"code": exc.code, "message": str(exc), "retry_after_ms": retry_ms}},
                status_code=429,
                headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
            )
        hub.metrics.bad_input.labels("http", exc.code).inc()
        return AsciiJSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            hub.metrics.bad_input.labels("http", "bad_json").inc()
            body = {"error": {"code": "bad_json", "message": "the body is not valid JSON"}}
            return AsciiJSONResponse(body, status_code=400)
        hub.metrics.bad_input.labels("http", "invalid_request").inc()
        # Where and what only: never the input (it may be large, or someone else's secret).
        short = [
            {"loc": e.get("loc", ()), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors[:5]
        ]
        return AsciiJSONResponse({"detail": jsonable_encoder(short)}, status_code=422)

    app.include_router(routes_health.router(hub, monitor, drainer))
    app.include_router(routes_speech.router(hub))
    app.include_router(openai_api.router(hub))
    app.include_router(routes_ws.router(hub, drainer))
    app.include_router(routes_status.router(hub, monitor))
    app.include_router(routes_admin.router(hub, monitor))
    app.include_router(routes_web.router())  # the static web client's catch-all route comes last
    c = hub.config
    settings = GuardSettings(
        tokens=Tokens.of(c),
        read_token=c.read_token,
        max_body_bytes=c.max_body_bytes,
        body_timeout_s=c.body_timeout_s,
        max_concurrent=c.http_max_concurrent,
        allowed_origins=c.allowed_origins,
        retry_after_s=c.retry_after_s,
    )
    app.add_middleware(
        Guard, settings=settings, refused=lambda code: hub.metrics.bad_input.labels("http", code).inc()
    )
    return app
