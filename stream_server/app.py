"""HTTP + websocket on one port: FastAPI (Starlette) served by uvicorn with the `websockets` package
as its websocket implementation. Why not the bare `websockets` server: it answers only GET, and we
need POST /tts and /v1/audio/speech plus an OpenAPI document on the same port (see
docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from broker import logs
from broker.audio import HEADER_SIZE, from_pcm16
from broker.errors import ProtocolError
from broker.wire import MAX_JSON_BYTES, Message

from .hub import Hub, SessionLink
from .monitor import Monitor
from .protocol import MAX_TEXT_CHARS, Error, Speak, TurnEnd, client_messages
from .session import encode_audio
from .status_routes import add_status_routes
from .status_view import HubView

log = logs.get("sesame.http")

WEB_DIR = Path(__file__).resolve().parent.parent / "clients" / "web"
VERSION = "0.1.0"
MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "pcm16": "audio/L16",
}


class TTSRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str | None = None
    format: Literal["wav", "flac", "ogg", "mp3"] = "wav"
    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 24000


class SpeechRequest(BaseModel):
    """OpenAI-compatible POST /v1/audio/speech."""

    model: str = "sesame"
    input: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str | None = None
    response_format: Literal["wav", "flac", "opus", "mp3", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)


class SpeechFailed(Exception):
    def __init__(self, errors: list[Error]) -> None:
        super().__init__("no speech produced")
        self.errors = errors


def create_app(hub: Hub, monitor: Monitor | None = None) -> FastAPI:
    app = FastAPI(
        title="sesame-voice",
        version=VERSION,
        description="Real-time speech for Maya: websocket streaming at /ws (docs/protocol.md), HTTP below.",
    )
    started = time.monotonic()
    token = hub.config.auth_token

    def authorized(headers: dict[str, str] | object, query_token: str | None) -> bool:
        if token is None:
            return True
        auth = getattr(headers, "get", lambda _k, _d=None: None)("authorization", "") or ""
        return auth == f"Bearer {token}" or query_token == token

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        hub.metrics.bad_input.labels("http", exc.code).inc()
        return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=400)

    @app.get("/health")
    async def health() -> dict[str, object]:
        """Liveness: the process is serving."""
        return {"status": "ok", "version": VERSION, "uptime_s": round(time.monotonic() - started, 1)}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Ready when at least one voice path can speak."""
        state = hub.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        if not hub.config.metrics_enabled:
            return Response("metrics disabled (SESAME_METRICS_ENABLED=false)\n", status_code=404)
        return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/monitoring/voice-metrics")
    async def voice_metrics() -> dict[str, object]:
        state = hub.readiness()
        workers = [w for w in state["workers"] if isinstance(w, dict)]  # type: ignore[attr-defined]
        primary = [w for w in workers if w.get("alive") and w.get("engine") == "bark"]
        loaded = any(w.get("state") == "ready" for w in primary)
        status = "healthy" if loaded else ("degraded" if state["ready"] else "down")
        model = next((str(w.get("model")) for w in primary if w.get("model")), "suno/bark-small")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return hub.metrics.voice_metrics(
            status=status,
            model_loaded=loaded,
            model_name=model,
            memory_mb=rss_mb,
            persisted=monitor.figures if monitor is not None else None,
        )

    if monitor is not None:
        add_status_routes(app, monitor, HubView(hub), hub.metrics)

    @app.post(
        "/tts", responses={200: {"content": {"audio/wav": {}}}, 503: {"description": "no voice could speak"}}
    )
    async def tts(body: TTSRequest, request: Request) -> Response:
        """Speak `text` and return the whole audio (the plan's load test calls this)."""
        if not authorized(request.headers, None):
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad token"}}, status_code=401)
        return await _speak_response(hub, body.text, body.voice, body.format, body.sample_rate)

    @app.post("/v1/audio/speech")
    async def speech(body: SpeechRequest, request: Request) -> Response:
        """OpenAI-compatible text to speech."""
        if not authorized(request.headers, None):
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad token"}}, status_code=401)
        fmt = {"opus": "ogg", "pcm": "pcm16"}.get(body.response_format, body.response_format)
        return await _speak_response(hub, body.input, body.voice, fmt, 24000)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not authorized(websocket.headers, websocket.query_params.get("token")):
            await websocket.close(code=1008, reason="unauthorized")
            return
        await websocket.accept()
        await _serve_websocket(hub, websocket)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/{name}", include_in_schema=False)
    async def web_file(name: str) -> Response:
        path = WEB_DIR / name
        if not name.endswith((".js", ".css", ".html")) or not path.is_file():
            return JSONResponse({"error": {"code": "not_found", "message": name}}, status_code=404)
        media = "text/javascript" if name.endswith(".js") else None
        return FileResponse(path, media_type=media)

    return app


async def _serve_websocket(hub: Hub, websocket: WebSocket) -> None:
    try:
        link = hub.open_session()
    except ProtocolError as exc:
        await websocket.send_text(Error(exc.code, str(exc)).to_json())
        await websocket.close(code=1013, reason=exc.code)
        return
    await websocket.send_text(link.core.ready_message().to_json())
    writer = asyncio.create_task(_write(websocket, link), name=f"ws-writer:{link.session_id}")
    try:
        while not link.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                hub.receive(link, _decode_frame(message.get("text")))
            except ProtocolError as exc:
                hub.refuse(link, exc)
    except WebSocketDisconnect:
        pass
    finally:
        hub.close_session(link, "client_disconnected")
        with contextlib.suppress(asyncio.QueueFull):
            link.out.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


def _decode_frame(raw_text: str | None) -> Message:
    if raw_text is None:
        raise ProtocolError("binary frames are not accepted: send JSON", code="binary_not_allowed")
    if len(raw_text) > MAX_JSON_BYTES:
        raise ProtocolError("frame too large", code="too_large")
    return client_messages.decode(raw_text)


async def _write(websocket: WebSocket, link: SessionLink) -> None:
    try:
        while True:
            item = await link.out.get()
            if item is None:
                if link.close_reason == "client_too_slow":
                    await websocket.send_text(
                        Error("client_too_slow", "the client did not read its audio").to_json()
                    )
                    await websocket.close(code=1008, reason="client_too_slow")
                return
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_text(item)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


async def _speak_response(hub: Hub, text: str, voice: str | None, fmt: str, sample_rate: int) -> Response:
    link = hub.open_session(voice, sample_rate=sample_rate)
    errors: list[str] = []  # codes of sentences no voice could speak
    pcm: list[bytes] = []
    try:
        hub.receive(link, Speak(text))
        async with asyncio.timeout(max(30.0, hub.config.failover.timeout_s * 3 + len(text) / 5)):
            while True:
                item = await link.out.get()
                if item is None:
                    break
                if isinstance(item, bytes):
                    pcm.append(item[HEADER_SIZE:])
                    continue
                msg = client_messages_json(item)
                if msg.get("type") == Error.type:
                    errors.append(str(msg.get("code")))
                elif msg.get("type") == TurnEnd.type:
                    break
    except TimeoutError:
        errors.append("timeout")
    finally:
        hub.close_session(link, "http_done")
    if not pcm:
        body = {
            "error": {
                "code": errors[0] if errors else "speech_unavailable",
                "message": "no voice could speak this text",
                "text": text,
            }
        }
        return JSONResponse(body, status_code=503)
    samples = from_pcm16(b"".join(pcm))
    headers = {"X-Sesame-Undelivered-Sentences": str(len(errors))}
    if fmt == "pcm16":
        return Response(b"".join(pcm), media_type=MEDIA_TYPES["pcm16"], headers=headers)
    audio = encode_audio(np.asarray(samples), sample_rate, fmt)
    return Response(audio, media_type=MEDIA_TYPES[fmt], headers=headers)


def client_messages_json(item: str) -> dict[str, object]:
    data = json.loads(item)
    return data if isinstance(data, dict) else {}
