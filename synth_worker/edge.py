"""Microsoft Edge's read-aloud voices over the edge-tts websocket protocol: the second cloud tier.

One websocket per turn (as the edge-tts package does)::

    client -> speech.config   output format audio-24khz-48kbitrate-mono-mp3
    client -> ssml            <speak><voice name=...><prosody ...>text</prosody></voice></speak>
    server -> turn.start, response, audio.metadata (text frames, ignored)
    server -> audio           binary: 2-byte big-endian header length, "Path:audio" headers, MP3 bytes
    server -> turn.end

Why not ``edge_tts.Communicate`` itself: it reads the service URL from a module constant inside a
private (name-mangled) method, so the only way to point it elsewhere is to rebind
``edge_tts.communicate.WSS_URL``, process-wide state that two engines with different endpoints
(or a test beside production code) would fight over. It also reports a connection that drops after
some audio as a normal end (a truncated sentence would pass as spoken), and its timeouts are whole
seconds. So this engine drives the websocket itself (``websockets``, as the rest of the project)
and takes everything else from the package, so the wire format stays the package's: the URL,
token and browser headers (``constants``, ``DRM`` with its clock-skew retry on 403), the text
clean-up and splitting, the SSML and message builders, and the binary header parser. The endpoint
is a constructor argument (default: the package's ``WSS_URL``).

MP3 is decoded while it arrives (``mp3stream.Mp3StreamDecoder``, in a thread), resampled to the
request's rate and loudness-matched like every engine (``pcm_stream.PcmShaper``).

Deadlines: ``connect_timeout`` (TCP + TLS + websocket upgrade), ``first_audio_timeout`` (from the
request to the first audio bytes: a server that accepts and says nothing costs only this), and
``stall_timeout`` (between messages once audio flows).

Errors, each with a ``code``: handshake 401/403 -> EngineUnavailable auth_failed; refused,
unresolvable or slow connect -> EngineUnavailable unreachable / connect_timeout; handshake 429 /
5xx / other -> EngineError rate_limited / upstream_error / handshake_failed; no audio in time ->
EngineTimeout first_audio_timeout; stall -> EngineTimeout stall; connection closed before turn.end
-> EngineError stream_broken; turn.end without audio -> EngineError no_audio; malformed frames ->
EngineError bad_response; undecodable MP3 -> EngineError bad_audio; cancel -> EngineCancelled.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import certifi
from edge_tts.communicate import (
    connect_id,
    date_to_string,
    get_headers_and_data,
    mkssml,
    remove_incompatible_characters,
    split_text_by_byte_length,
    ssml_headers_plus_data,
)
from edge_tts.constants import SEC_MS_GEC_VERSION, WSS_HEADERS, WSS_URL
from edge_tts.data_classes import TTSConfig
from edge_tts.drm import DRM
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from broker.audio import Samples
from broker.errors import (
    ConfigError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    ProtocolError,
)

from .engine import CancelToken, EngineChunk, SynthesisRequest
from .mp3stream import Mp3StreamDecoder
from .netstream import check_timeouts, relay
from .pcm_stream import PcmShaper
from .voices import VoiceMap

OUTPUT_FORMAT = "audio-24khz-48kbitrate-mono-mp3"
_MAX_TEXT_BYTES = 4096  # per turn, as edge-tts splits


def speech_config_message() -> str:
    """The speech.config frame edge-tts sends first (sentence boundaries on, word boundaries off)."""
    return (
        f"X-Timestamp:{date_to_string()}\r\n"
        "Content-Type:application/json; charset=utf-8\r\n"
        "Path:speech.config\r\n\r\n"
        '{"context":{"synthesis":{"audio":{"metadataoptions":{'
        '"sentenceBoundaryEnabled":"true","wordBoundaryEnabled":"false"},'
        f'"outputFormat":"{OUTPUT_FORMAT}"'
        "}}}}\r\n"
    )


class EdgeTTSEngine:
    name = "edge-tts"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        voices: VoiceMap | None = None,
        rate: str = "+0%",
        volume: str = "+0%",
        pitch: str = "+0Hz",
        connect_timeout: float = 1.5,
        first_audio_timeout: float = 3.0,
        stall_timeout: float = 2.0,
        chunk_ms: int = 40,
    ) -> None:
        self.endpoint = endpoint or WSS_URL
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError(f"edge-tts endpoint must be ws(s)://host/path, got {self.endpoint!r}")
        check_timeouts(
            "edge-tts",
            connect_timeout=connect_timeout,
            first_audio_timeout=first_audio_timeout,
            stall_timeout=stall_timeout,
        )
        try:  # the package validates prosody strings; check them once, here
            TTSConfig("en-US-AriaNeural", rate, volume, pitch, "SentenceBoundary")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"edge-tts prosody: {exc}") from exc
        self.voices = voices or VoiceMap()
        self.rate, self.volume, self.pitch = rate, volume, pitch
        self.connect_timeout = connect_timeout
        self.first_audio_timeout = first_audio_timeout
        self.stall_timeout = stall_timeout
        self.chunk_ms = chunk_ms
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "wss":
            # edge-tts pins certifi's CA bundle (installed with it); do the same.
            self._ssl = ssl.create_default_context(cafile=certifi.where())

    def __repr__(self) -> str:
        return f"EdgeTTSEngine(endpoint={urlsplit(self.endpoint).netloc!r})"

    async def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        cancel.check("synthesis cancelled")
        try:
            voice = self.voices.get(request.voice).edge_voice
            config = TTSConfig(voice, self.rate, self.volume, self.pitch, "SentenceBoundary")
        except ProtocolError as exc:
            raise EngineError(str(exc), code=exc.code) from exc
        except (TypeError, ValueError) as exc:
            raise EngineError(
                f"edge-tts cannot use voice {request.voice!r}: {exc}", code="bad_voice"
            ) from exc
        texts = list(
            split_text_by_byte_length(escape(remove_incompatible_characters(request.text)), _MAX_TEXT_BYTES)
        )
        if not texts:
            raise EngineError("nothing to say: empty text", code="empty_text")

        decoder = Mp3StreamDecoder()
        shaper: PcmShaper | None = None

        def shape(samples: Samples, final: bool) -> list[EngineChunk]:
            nonlocal shaper
            if shaper is None:
                if not decoder.sample_rate:
                    return []
                shaper = PcmShaper(decoder.sample_rate, request.sample_rate, self.chunk_ms)
            chunks = shaper.feed(samples) if len(samples) else []
            return chunks + shaper.flush() if final else chunks

        produced = 0
        async for data in relay(self._stream(config, texts), cancel, name="edge-tts-stream"):
            decoder.push(data)
            if decoder.due:
                for chunk in shape(await asyncio.to_thread(decoder.decode), final=False):
                    cancel.check("synthesis cancelled")
                    produced += 1
                    yield chunk
        tail = await asyncio.to_thread(decoder.finish)
        chunks = shape(tail, final=True)
        if produced == 0 and not chunks:
            raise EngineError("edge-tts audio decoded to nothing", code="bad_audio")
        for chunk in chunks:
            yield chunk

    # ---- the network side: runs in the relay's task ---------------------------------------------

    async def _stream(self, config: TTSConfig, texts: list[bytes]) -> AsyncGenerator[bytes, None]:
        for text in texts:
            async for data in self._turn(config, text):
                yield data

    async def _turn(self, config: TTSConfig, text: bytes) -> AsyncGenerator[bytes, None]:
        ws = await self._connect()
        try:
            await ws.send(speech_config_message())
            await ws.send(ssml_headers_plus_data(connect_id(), date_to_string(), mkssml(config, text)))
            loop = asyncio.get_running_loop()
            first_deadline = loop.time() + self.first_audio_timeout
            got_audio = False
            while True:
                try:
                    if got_audio:
                        async with asyncio.timeout(self.stall_timeout):
                            message = await ws.recv()
                    else:
                        async with asyncio.timeout_at(first_deadline):
                            message = await ws.recv()
                except TimeoutError as exc:
                    if got_audio:
                        raise EngineTimeout(
                            f"edge-tts audio stalled for {self.stall_timeout:.2f}s", code="stall"
                        ) from exc
                    raise EngineTimeout(
                        f"edge-tts sent no audio within {self.first_audio_timeout:.2f}s",
                        code="first_audio_timeout",
                    ) from exc
                except ConnectionClosed as exc:
                    raise EngineError(
                        "edge-tts connection closed before the end of the turn", code="stream_broken"
                    ) from exc
                if isinstance(message, str):
                    if _text_path(message) == b"turn.end":
                        break
                    continue  # turn.start, response, audio.metadata
                audio = _audio_payload(message)
                if audio:
                    got_audio = True
                    yield audio
            if not got_audio:
                raise EngineError("edge-tts ended the turn without audio", code="no_audio")
        finally:
            await ws.close()

    async def _connect(self) -> ClientConnection:
        skew_retried = False
        while True:
            url = (
                f"{self.endpoint}{'&' if '?' in self.endpoint else '?'}ConnectionId={connect_id()}"
                f"&Sec-MS-GEC={DRM.generate_sec_ms_gec()}&Sec-MS-GEC-Version={SEC_MS_GEC_VERSION}"
            )
            headers = {
                k: v for k, v in DRM.headers_with_muid(WSS_HEADERS).items() if k != "Sec-WebSocket-Version"
            }
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await connect(
                        url,
                        additional_headers=headers,
                        user_agent_header=None,  # the browser User-Agent is in ``headers``
                        ssl=self._ssl,
                        open_timeout=None,  # bounded by the asyncio.timeout above
                        close_timeout=1.0,
                        max_size=2**22,
                    )
            except TimeoutError as exc:
                raise EngineUnavailable(
                    f"edge-tts: no connection within {self.connect_timeout:.2f}s", code="connect_timeout"
                ) from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                server_date = exc.response.headers.get("Date")
                if status == 403 and server_date and not skew_retried:
                    # What edge-tts does on 403: the token is time-based, correct the clock and retry once.
                    server_ts = DRM.parse_rfc2616_date(server_date)
                    if server_ts is not None:
                        DRM.adj_clock_skew_seconds(server_ts - DRM.get_unix_timestamp())
                        skew_retried = True
                        continue
                raise _status_error(status) from exc
            except InvalidURI as exc:
                raise ConfigError(f"edge-tts endpoint is not a websocket URL: {exc}") from exc
            except InvalidHandshake as exc:
                raise EngineError(
                    f"edge-tts handshake failed: {type(exc).__name__}", code="handshake_failed"
                ) from exc
            except OSError as exc:
                raise EngineUnavailable(
                    f"edge-tts unreachable: {type(exc).__name__}", code="unreachable"
                ) from exc


def _text_path(message: str) -> bytes | None:
    data = message.encode("utf-8")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        headers, _ = get_headers_and_data(data, end)
    except ValueError:
        return None
    return headers.get(b"Path")


def _audio_payload(message: bytes) -> bytes:
    """The MP3 bytes of a binary audio frame (b"" for the empty end-of-stream frame)."""
    if len(message) < 2:
        raise EngineError("edge-tts binary frame shorter than its header length", code="bad_response")
    header_length = int.from_bytes(message[:2], "big")
    if header_length > len(message):
        raise EngineError("edge-tts binary frame header longer than the frame", code="bad_response")
    try:
        headers, data = get_headers_and_data(message, header_length)
    except ValueError as exc:
        raise EngineError("edge-tts binary frame with malformed headers", code="bad_response") from exc
    if headers.get(b"Path") != b"audio":
        raise EngineError("edge-tts binary frame that is not audio", code="bad_response")
    content_type = headers.get(b"Content-Type")
    if content_type is None and not data:
        return b""
    if content_type != b"audio/mpeg" or not data:
        raise EngineError("edge-tts audio frame with unexpected content", code="bad_response")
    return data


def _status_error(status: int) -> EngineError:
    message = f"edge-tts handshake answered HTTP {status}"
    if status in (401, 403):
        return EngineUnavailable(message, code="auth_failed")
    if status == 429:
        return EngineError(message, code="rate_limited")
    if status >= 500:
        return EngineError(message, code="upstream_error")
    return EngineError(message, code="handshake_failed")
