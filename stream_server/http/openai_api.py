"""OpenAI-compatible speech: ``POST /v1/audio/speech``, ``GET /v1/audio/voices``, ``GET /v1/models``.

Faithful to OpenAI's API reference, so the official ``openai`` package and the tools built on it work
unchanged (point ``base_url`` at ``http://HOST:8000/v1``):

- ``response_format`` mp3 (default), opus (Ogg), aac (ADTS), flac, wav, pcm (24 kHz PCM16, no header);
- ``speed`` 0.25-4.0 divides the duration by ``speed`` without changing pitch: each sentence is
  time-stretched (``audio_out.stretch.time_stretch``, WSOLA) once it is whole. Not through
  espeak-ng's own rate: its words per minute do not scale durations in proportion (measured,
  docs/benchmarks.md "speed"), so ``speed=2`` would not give half the audio as OpenAI defines it;

- ``stream_format`` ``audio`` (default): the encoded bytes as a chunked body; ``sse``: server-sent
  events ``speech.audio.delta`` (base64 audio) and a final ``speech.audio.done`` with ``usage``;
- the audio streams: the first sentence's bytes leave while later sentences are still being made.
  The status is decided at the first audio: 200 once some speech exists, 503 (with the text) when
  no voice could speak any of it, 400 for bad input (OpenAI's error shape).

A sentence that no voice could speak in the middle of a text is left out of the audio (it is counted
in ``sesame_sentences_total{engine="text"}`` and logged); headers are gone by then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker import logs
from broker.audio import HEADER_SIZE, from_pcm16
from broker.errors import Overloaded, ProtocolError
from broker.ws_protocol import MAX_TEXT_CHARS, Error, SentenceEnd, SentenceStart, Speak, TurnEnd
from stream_server.audio_out.formats import (
    MEDIA_TYPES,
    SpeechFormat,
    SpeechUsage,
    StreamEncoder,
    sse_audio_delta,
    sse_audio_done,
    stream_encoder,
)
from stream_server.audio_out.stretch import MAX_SPEED, MIN_SPEED, time_stretch
from stream_server.core.lookahead import unpaced
from stream_server.http.auth import Tokens, client_identity
from stream_server.http.ports import SpeechHost
from stream_server.http.routes_speech import check_speakable
from stream_server.hub.live_sessions import CloseReason, SessionLink

log = logs.get("sesame.openai")

RATE = 24_000  # OpenAI's pcm is 24 kHz; every format is made at that rate
MODEL = "sesame"
# OpenAI's model names are accepted as names of the one pipeline, so tools need no change.
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
MODELS = (MODEL, *MODEL_ALIASES)
CREATED = 1_735_689_600  # 2025-01-01, the "created" of every model entry


class VoiceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # OpenAI requires model and voice; here they may be left out (the pipeline, the default voice).
    model: str = MODEL
    input: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str | VoiceRef | None = None
    instructions: str | None = None
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] = "audio"

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


def openai_error(status: int, message: str, code: str, param: str | None = None) -> Response:
    """OpenAI's error shape; ASCII JSON, so a message that echoes odd input is still valid."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(json.dumps(body, ensure_ascii=True), status_code=status, media_type="application/json")


def parse_request(raw: bytes) -> SpeechRequest:
    """The body as OpenAI defines it; ProtocolError (400) for anything else."""
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
        body = SpeechRequest.model_validate(data)
        body.input.encode("utf-8")  # a lone surrogate ("\ud800") is no text
    except (UnicodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting: no 500
        raise ProtocolError("the body is not valid UTF-8 JSON", code="bad_json") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ProtocolError(f"{where}: {first['msg']}", code=f"bad_field:{where}") from exc
    if body.model not in MODELS:
        raise ProtocolError(
            f"unknown model {body.model!r}; known: {', '.join(MODELS)}", code="bad_field:model"
        )
    if body.instructions:
        raise ProtocolError("instructions are not supported by these voices", code="bad_field:instructions")
    check_speakable(body.input)  # nothing_to_speak, bad_text
    return body


@dataclass(slots=True)
class _Turn:
    """One request's progress: sentences spoken, left out, audio samples out."""

    spoken: int = 0
    failed: int = 0
    samples: int = 0


@dataclass(frozen=True, slots=True)
class _Start:
    engine: str
    restart: bool


_END = b""  # the end of a sentence
Piece = bytes | _Start  # pcm16 audio, a sentence start, or _END


async def _pieces(hub: SpeechHost, link: SessionLink, text: str, turn: _Turn) -> AsyncIterator[Piece]:
    """The session's sentences as they come: a start (engine), its PCM16 audio, its end."""
    hub.receive(link, Speak(text))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(30.0, hub.config.failover.timeout_s * 3 + len(text) / 5)
    while True:
        # The deadline covers each wait only, never a yield (a timeout must not fire in the consumer).
        async with asyncio.timeout_at(deadline):
            item = await link.out.get()
        if item is None:
            return
        match item:
            case bytes() if len(item) > HEADER_SIZE:
                yield item[HEADER_SIZE:]
            case SentenceStart(engine=engine, restart=restart):
                yield _Start(engine, restart)
            case SentenceEnd():
                turn.spoken += 1
                yield _END
            case Error():
                turn.failed += 1
            case TurnEnd():
                return


async def _encoded(
    hub: SpeechHost, link: SessionLink, body: SpeechRequest, encoder: StreamEncoder, turn: _Turn
) -> AsyncGenerator[bytes, None]:
    """The encoded audio, piece by piece: at speed 1 as it arrives; at another speed each sentence
    is time-stretched once it is whole."""
    pending: list[bytes] = []
    async for piece in _pieces(hub, link, body.input, turn):
        if isinstance(piece, _Start):
            pending.clear()  # a restart: the failed engine's audio is not used
            continue
        if piece and body.speed == 1.0:
            samples = from_pcm16(piece)
        elif piece:
            pending.append(piece)
            continue
        elif pending:
            whole = from_pcm16(b"".join(pending))
            pending.clear()
            samples = await hub.encoder.run(time_stretch, whole, RATE, body.speed)
        else:
            continue
        turn.samples += len(samples)
        # Encoding and stretching cost up to ~0.1 s of CPU per second of audio (docs/benchmarks.md):
        # off the event loop, in the hub's bounded pool, so heartbeats and sessions never wait.
        if out := await hub.encoder.run(encoder.encode, np.asarray(samples)):
            yield out
    if out := await hub.encoder.run(encoder.finish):
        yield out


async def speech(hub: SpeechHost, body: SpeechRequest, client: str | None = None) -> Response:
    # unknown voice: ProtocolError; no room for this client: Overloaded
    link = hub.open_session(body.voice_name, sample_rate=RATE, client=client)
    link.core.lookahead = unpaced(link.core.lookahead)  # an HTTP response, fetched as fast as it comes
    turn = _Turn()
    encoder = stream_encoder(body.response_format, RATE)
    pieces = _encoded(hub, link, body, encoder, turn)
    try:
        first = await anext(pieces, b"")
    except TimeoutError:
        first = b""
    if turn.samples == 0:
        hub.close_session(link, CloseReason.HTTP_DONE)
        await pieces.aclose()
        return openai_error(503, f"no voice could speak this text: {body.input}", "speech_unavailable")
    started = time.monotonic()

    async def audio() -> AsyncIterator[bytes]:
        try:
            yield first
            async for piece in pieces:
                yield piece
        except TimeoutError:
            log.warning("speech_timed_out", session_id=link.session_id, spoken=turn.spoken)
        finally:
            hub.close_session(link, CloseReason.HTTP_DONE)
            log.info(
                "openai_speech",
                session_id=link.session_id,
                format=body.response_format,
                speed=body.speed,
                sentences=turn.spoken,
                undelivered=turn.failed,
                seconds=round(time.monotonic() - started, 3),
            )

    async def sse() -> AsyncIterator[bytes]:
        async for piece in audio():
            yield sse_audio_delta(piece)
        # OpenAI counts tokens; here input = characters, output = 20 ms frames of audio made.
        yield sse_audio_done(SpeechUsage(len(body.input), turn.samples // (RATE // 50)))

    if body.stream_format == "sse":
        return StreamingResponse(sse(), media_type="text/event-stream")
    return StreamingResponse(audio(), media_type=MEDIA_TYPES[body.response_format])


def router(hub: SpeechHost) -> APIRouter:
    """The /v1 routes."""
    router = APIRouter()
    tokens = Tokens.of(hub.config)

    @router.post(
        "/v1/audio/speech",
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, 400: {}, 503: {}},
    )
    async def create_speech(request: Request) -> Response:
        """OpenAI-compatible text to speech, streamed (body: OpenAI's CreateSpeechRequest)."""
        if (holder := tokens.holder(request.headers)) is None:
            return openai_error(401, "bad or missing bearer token", "unauthorized")
        try:
            body = parse_request(await request.body())
            return await speech(hub, body, client_identity(request.client, holder))
        except Overloaded as exc:
            response = openai_error(429, str(exc), "overloaded")
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
            return response
        except ProtocolError as exc:
            code, _, param = exc.code.partition(":")
            if exc.code == "unknown_voice":
                code, param = "unknown_voice", "voice"
            hub.metrics.bad_input.labels("http", code).inc()
            return openai_error(400, str(exc), code, param or None)

    @router.get("/v1/audio/voices")
    async def list_voices() -> dict[str, object]:
        """Every voice, with its language and the engines that speak it as itself."""
        data = [
            {
                "id": v.name,
                "object": "voice",
                "language": v.language,
                "engines": list(v.engines),
                "default": v.name == hub.voices.default,
            }
            for v in hub.voices.all()
        ]
        return {"object": "list", "data": data}

    @router.get("/v1/models")
    async def list_models() -> dict[str, object]:
        data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "sesame-voice"} for m in MODELS]
        return {"object": "list", "data": data}

    return router
