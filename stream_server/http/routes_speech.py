"""Whole-utterance HTTP: ``POST /tts`` (the OpenAI-compatible, streamed ``/v1/audio/speech`` is
``openai_api.py``).

It opens a short-lived session, speaks the text, collects the audio and answers it in one body. Bad
input is a 400 with a code (``nothing_to_speak``, ``bad_text``, ...); 503
only when no voice could speak text that had something to say.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from broker.audio import HEADER_SIZE, from_pcm16
from broker.errors import ProtocolError
from broker.ws_protocol import MAX_TEXT_CHARS, Error, Speak, TurnEnd, check_text
from stream_server.audio_out.encode import encode_audio
from stream_server.core.lookahead import unpaced
from stream_server.http.auth import Tokens, client_identity
from stream_server.http.ports import SpeechHost
from stream_server.hub.live_sessions import CloseReason

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


def unauthorized() -> JSONResponse:
    return JSONResponse({"error": {"code": "unauthorized", "message": "bad token"}}, status_code=401)


def router(hub: SpeechHost) -> APIRouter:
    r = APIRouter()
    tokens = Tokens.of(hub.config)

    @r.post(
        "/tts", responses={200: {"content": {"audio/wav": {}}}, 503: {"description": "no voice could speak"}}
    )
    async def tts(body: TTSRequest, request: Request) -> Response:
        """Speak `text` and return the whole audio (the plan's load test calls this)."""
        if (holder := tokens.holder(request.headers)) is None:
            return unauthorized()
        client = client_identity(request.client, holder)
        return await speak_response(hub, body.text, body.voice, body.format, body.sample_rate, client=client)

    return r


def check_speakable(text: str) -> None:
    check_text(text)
    if not any(ch.isalnum() for ch in text):
        raise ProtocolError(
            "the text has nothing to speak (only spaces or punctuation)", code="nothing_to_speak"
        )


async def speak_response(
    hub: SpeechHost, text: str, voice: str | None, fmt: str, sample_rate: int, *, client: str | None = None
) -> Response:
    check_speakable(text)
    link = hub.open_session(voice, sample_rate=sample_rate, client=client)
    link.core.lookahead = unpaced(link.core.lookahead)  # the whole turn is answered at once
    errors: list[str] = []  # codes of sentences no voice could speak
    pcm: list[bytes] = []
    try:
        hub.receive(link, Speak(text))
        async with asyncio.timeout(max(30.0, hub.config.failover.timeout_s * 3 + len(text) / 5)):
            while (item := await link.out.get()) is not None:
                if isinstance(item, bytes):
                    pcm.append(item[HEADER_SIZE:])
                elif isinstance(item, Error):
                    errors.append(item.code)
                elif isinstance(item, TurnEnd):
                    break
    except TimeoutError:
        errors.append("timeout")
    finally:
        hub.close_session(link, CloseReason.HTTP_DONE)
    if not pcm:
        body = {
            "error": {
                "code": errors[0] if errors else "speech_unavailable",
                "message": "no voice could speak this text",
                "text": text,
            }
        }
        return JSONResponse(body, status_code=503)
    headers = {"X-Sesame-Undelivered-Sentences": str(len(errors))}
    if fmt == "pcm16":
        return Response(b"".join(pcm), media_type=MEDIA_TYPES["pcm16"], headers=headers)
    # Off the event loop (audio_out/encoder_pool.py): a long mp3 would stall every session.
    audio = await hub.encoder.run(encode_audio, np.asarray(from_pcm16(b"".join(pcm))), sample_rate, fmt)
    return Response(audio, media_type=MEDIA_TYPES[fmt], headers=headers)
