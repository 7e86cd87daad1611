"""A loopback stand-in for the Edge read-aloud websocket service that edge-tts talks to.

Handshake: GET /consumer/speech/synthesize/readaloud/edge/v1?TrustedClientToken=...&ConnectionId=...
&Sec-MS-GEC=...&Sec-MS-GEC-Version=... (a wrong path or token is refused with 404/403). Then:

    client -> text "Path:speech.config"  (must ask for audio-24khz-48kbitrate-mono-mp3)
    client -> text "Path:ssml"           (<speak><voice name=...><prosody>text</prosody></voice></speak>)
    server -> text turn.start, text response
    server -> binary audio frames: 2-byte big-endian header length, headers ending in
              "Path:audio\r\n", then MP3 bytes (espeak-ng speech, 48 kbit/s CBR)
    server -> text audio.metadata (a SentenceBoundary), an empty binary audio frame, text turn.end

``mode`` (settable, read per connection): ok; 401 / 403 / 500 (the websocket upgrade is refused
with that status); silence (accepts, reads the request, sends nothing); stall (turn.start and some
audio, then nothing); die (some audio, then the TCP connection is dropped).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from edge_tts.constants import TRUSTED_CLIENT_TOKEN
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .loopthread import LoopThread
from .speech import speech_mp3

Mode = Literal["ok", "401", "403", "500", "silence", "stall", "die"]
PATH = "/consumer/speech/synthesize/readaloud/edge/v1"
AUDIO_PIECE = 1000  # bytes of MP3 per audio frame: not aligned to MP3 frames, like the service
PARTIAL_PIECES = 3  # what "stall" and "die" send before misbehaving


@dataclass
class SeenTurn:
    query: dict[str, str]
    headers: Headers
    config: dict[str, object]
    voice: str
    text: str
    prosody: dict[str, str]


class EdgeStandIn:
    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.handshakes = 0
        self.turns: list[SeenTurn] = []
        self.request_seen = threading.Event()  # set when an ssml request has been read
        self.disconnected = threading.Event()  # set when a client hangs up before turn.end
        self.port = 0
        self._thread = LoopThread("edge-stand-in")
        self._pending: dict[int, tuple[dict[str, str], Headers]] = {}

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}?TrustedClientToken={TRUSTED_CLIENT_TOKEN}"

    def __enter__(self) -> EdgeStandIn:
        self._thread.start(self._serve)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.stop()

    async def _serve(self, stopping: asyncio.Event) -> None:
        server: Server
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._check, compression="deflate"
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._thread.mark_ready()
            await stopping.wait()
            server.close(close_connections=False)
            for connection in list(server.connections):
                connection.transport.abort()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != PATH:
            return connection.respond(404, "Not Found\n")
        missing = {"TrustedClientToken", "ConnectionId", "Sec-MS-GEC", "Sec-MS-GEC-Version"} - query.keys()
        if missing or query["TrustedClientToken"] != TRUSTED_CLIENT_TOKEN:
            return connection.respond(403, "Forbidden\n")
        if self.mode in ("401", "403", "500"):
            return connection.respond(int(self.mode), "Refused by the stand-in\n")
        self._pending[id(connection)] = (query, request.headers)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        query, headers = self._pending.pop(id(ws))
        mode = self.mode
        try:
            config = _body(await ws.recv(), "speech.config")
            fmt = config["context"]["synthesis"]["audio"]["outputFormat"]  # type: ignore[index]
            if fmt != "audio-24khz-48kbitrate-mono-mp3":
                await ws.close(1007, "unsupported output format")
                return
            ssml = await ws.recv()
            request_id = _header(ssml, "X-RequestId")
            turn = _parse_ssml(_body_text(ssml, "ssml"), query, headers, config)
            self.turns.append(turn)
            self.request_seen.set()
            if mode == "silence":
                await ws.wait_closed()
                self.disconnected.set()
                return
            mp3 = await asyncio.to_thread(speech_mp3, turn.text)
            await ws.send(_text(request_id, "turn.start", {"context": {"serviceTag": uuid.uuid4().hex}}))
            await ws.send(
                _text(request_id, "response", {"context": {"serviceTag": "x"}, "audio": {"type": "inline"}})
            )
            pieces = [mp3[i : i + AUDIO_PIECE] for i in range(0, len(mp3), AUDIO_PIECE)]
            if mode in ("stall", "die"):
                pieces = pieces[:PARTIAL_PIECES]
            for piece in pieces:
                await ws.send(_audio(request_id, piece))
            if mode == "die":
                ws.transport.abort()
                return
            if mode == "stall":
                await ws.wait_closed()
                self.disconnected.set()
                return
            metadata = {
                "Metadata": [
                    {
                        "Type": "SentenceBoundary",
                        "Data": {
                            "Offset": 1_000_000,
                            "Duration": 10_000_000,
                            "text": {
                                "Text": turn.text,
                                "Length": len(turn.text),
                                "BoundaryType": "SentenceBoundary",
                            },
                        },
                    }
                ]
            }
            await ws.send(_text(request_id, "audio.metadata", metadata))
            await ws.send(_audio(request_id, b"", content_type=None))
            await ws.send(_text(request_id, "turn.end", {}))
            await ws.wait_closed()
        except ConnectionClosed:
            self.disconnected.set()


def _header(message: str | bytes, name: str) -> str:
    text = message if isinstance(message, str) else message.decode()
    found = re.search(rf"^{re.escape(name)}:(.*)$", text.split("\r\n\r\n", 1)[0], re.MULTILINE)
    return found.group(1).strip() if found else ""


def _body_text(message: str | bytes, path: str) -> str:
    text = message if isinstance(message, str) else message.decode()
    head, _, body = text.partition("\r\n\r\n")
    if f"Path:{path}" not in head.split("\r\n"):
        raise ValueError(f"expected Path:{path}, got {head!r}")
    return body


def _body(message: str | bytes, path: str) -> dict[str, object]:
    parsed = json.loads(_body_text(message, path))
    assert isinstance(parsed, dict)
    return parsed


def _parse_ssml(ssml: str, query: dict[str, str], headers: Headers, config: dict[str, object]) -> SeenTurn:
    ns = "{http://www.w3.org/2001/10/synthesis}"
    root = ET.fromstring(ssml)
    voice = root.find(f"{ns}voice")
    prosody = voice.find(f"{ns}prosody") if voice is not None else None
    if voice is None or prosody is None:
        raise ValueError("SSML without voice/prosody")
    return SeenTurn(query, headers, config, voice.get("name", ""), prosody.text or "", dict(prosody.attrib))


def _text(request_id: str, path: str, body: object) -> str:
    return (
        f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n{json.dumps(body)}"
    )


def _audio(request_id: str, data: bytes, content_type: str | None = "audio/mpeg") -> bytes:
    head = f"X-RequestId:{request_id}\r\n"
    if content_type is not None:
        head += f"Content-Type:{content_type}\r\n"
    head += f"X-StreamId:{request_id.upper()}\r\nPath:audio\r\n"
    raw = head.encode()
    return len(raw).to_bytes(2, "big") + raw + data
