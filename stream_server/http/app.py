"""HTTP + websocket on one port: the app factory. FastAPI (Starlette) served by uvicorn with the
`websockets` package as its websocket implementation. Why not the bare `websockets` server: it
answers only GET, and we need POST /tts and /v1/audio/speech plus an OpenAPI document on the same
port (see docs/architecture.md).

Routes live in modules by concern (``routes_ws``, ``routes_speech``, ``routes_health``,
``routes_status``, ``openai_api``, ``routes_web``), each a ``router(...)`` taking the port it needs
(``http/ports.py``); the monitor and the SIGTERM drainer are passed in by the composition root.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from broker.errors import ProtocolError
from stream_server.http import openai_api, routes_health, routes_speech, routes_status, routes_web, routes_ws
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
        hub.metrics.bad_input.labels("http", exc.code).inc()
        return AsciiJSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        hub.metrics.bad_input.labels("http", "invalid_request").inc()
        return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    app.include_router(routes_health.router(hub, monitor, drainer))
    app.include_router(routes_speech.router(hub))
    app.include_router(openai_api.router(hub))
    app.include_router(routes_ws.router(hub, drainer))
    app.include_router(routes_status.router(hub, monitor))
    app.include_router(routes_web.router())  # the static web client's catch-all route comes last
    return app
