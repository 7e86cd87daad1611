"""A loopback stand-in for ElevenLabs' streaming text-to-speech endpoint (plain asyncio HTTP/1.1).

    POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_{16000|22050|24000|44100}
    xi-api-key: <key>            (wrong or missing: 401 {"detail": {"status": "invalid_api_key"}})
    {"text": "...", "model_id": "...", "voice_settings": {...}?}
    -> 200 audio/pcm, Transfer-Encoding: chunked, raw PCM16LE speech (espeak-ng) at that rate

``mode`` (settable at any time, read per request):
    ok        the whole sentence, in chunks of odd sizes (a sample may straddle two chunks)
    401       invalid_api_key, whatever the key
    429       too_many_concurrent_requests
    500       an internal server error
    silence   200 headers, then nothing (the connection stays open)
    stall     some audio, then nothing
    die       some audio, then the TCP connection is dropped (no terminating chunk)

Everything a request carried is appended to ``requests`` (the key itself only as ``key_ok``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from .loopthread import LoopThread
from .speech import speech_pcm16

Mode = Literal["ok", "401", "429", "500", "silence", "stall", "die"]
PCM_RATES = (16_000, 22_050, 24_000, 44_100)
CHUNK_BYTES = 4001  # odd on purpose
PARTIAL_BYTES = 3 * CHUNK_BYTES  # what "stall" and "die" send before misbehaving


@dataclass
class SeenRequest:
    method: str
    path: str
    voice_id: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; xi-api-key removed
    key_ok: bool
    body: dict[str, object] = field(default_factory=dict)


class ElevenLabsStandIn:
    def __init__(self, api_key: str = "sk-test-0123456789abcdef") -> None:
        self.api_key = api_key
        self.mode: Mode = "ok"
        self.requests: list[SeenRequest] = []
        self.request_seen = threading.Event()  # set when a request has been read
        self.disconnected = threading.Event()  # set when a client hangs up before the response ended
        self.port = 0
        self._thread = LoopThread("elevenlabs-stand-in")
        self._handlers: set[asyncio.Task[object]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ElevenLabsStandIn:
        self._thread.start(self._serve)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.stop()

    async def _serve(self, stopping: asyncio.Event) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._thread.mark_ready()
        async with server:
            await stopping.wait()
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # handlers then end on their own (cancelling them logs noise)
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.split("/")
        voice_id = unquote(parts[3]) if len(parts) == 5 else ""
        key_ok = headers.pop("xi-api-key", None) == self.api_key
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        self.requests.append(SeenRequest(method, url.path, voice_id, query, headers, key_ok, body))
        self.request_seen.set()

        mode = self.mode
        if (
            method != "POST"
            or len(parts) != 5
            or parts[1:3] != ["v1", "text-to-speech"]
            or parts[4] != "stream"
        ):
            return await _json(writer, 404, {"detail": "Not Found"})
        if not key_ok or mode == "401":
            return await _json(
                writer, 401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            )
        fmt = query.get("output_format", "mp3_44100_128")
        if not fmt.startswith("pcm_") or int(fmt[4:] or 0) not in PCM_RATES:
            return await _json(
                writer, 422, {"detail": [{"loc": ["query", "output_format"], "msg": "invalid"}]}
            )
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or not isinstance(body.get("model_id"), str):
            return await _json(
                writer, 400, {"detail": {"status": "invalid_request", "message": "text required"}}
            )
        if mode == "429":
            return await _json(writer, 429, {"detail": {"status": "too_many_concurrent_requests"}})
        if mode == "500":
            return await _json(writer, 500, {"detail": {"status": "internal_error"}})

        pcm = await asyncio.to_thread(speech_pcm16, text, int(fmt[4:]))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
        )
        await writer.drain()
        if mode == "silence":
            await reader.read()  # nothing until the client hangs up
            self.disconnected.set()
            return
        if mode in ("stall", "die"):
            pcm = pcm[:PARTIAL_BYTES]
        for i in range(0, len(pcm), CHUNK_BYTES):
            piece = pcm[i : i + CHUNK_BYTES]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if mode == "die":
            writer.transport.abort()
            return
        if mode == "stall":
            await reader.read()
            self.disconnected.set()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _json(writer: asyncio.StreamWriter, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}.get(
        status, "Error"
    )
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
