"""ElevenLabs over its streaming HTTP API: the first cloud fallback tier.

    POST {base_url}/v1/text-to-speech/{voice_id}/stream?output_format=pcm_{rate}
    xi-api-key: <key>
    {"text": ..., "model_id": ..., "voice_settings": {...}?}
    -> 200, a chunked body of raw PCM16LE mono at {rate}

We ask for the PCM rate that matches the request when ElevenLabs offers it (16000, 22050, 24000;
44100 needs a higher subscription tier, so it is only used when listed in ``output_rates``), else
the nearest one above, and resample the rest of the way (``pcm_stream.StreamResampler``, seamless
across network chunks). Loudness is matched to ``broker.audio.TARGET_RMS_DBFS`` with a running,
speech-gated gain (``pcm_stream.RunningLoudness``), so a switch from Bark to ElevenLabs mid-turn
does not jump in level.

Deadlines (all configurable; the defaults suit a fallback tier, which must fail fast):
    connect_timeout      TCP + TLS connect (an unreachable tier costs only this)
    first_byte_timeout   from sending the request on a connection to the first audio byte
    stall_timeout        between audio bytes once the stream has started

Errors (``broker.errors``), each with a ``code``:
    401, 403                         EngineUnavailable  auth_failed (bad key, quota, plan)
    connect refused / DNS / timeout  EngineUnavailable  unreachable / connect_timeout
    429                              EngineError        rate_limited
    5xx                              EngineError        upstream_error
    other 4xx (bad voice id, text)   EngineError        bad_request
    no first byte in time            EngineTimeout      first_byte_timeout
    stall mid-stream                 EngineTimeout      stall
    connection dropped mid-stream    EngineError        stream_broken
    200 with no audio                EngineError        no_audio
    cancel token set                 EngineCancelled    cancelled

The API key is sent in one header of each request and kept in a private attribute; it is never part
of a message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from urllib.parse import quote, urlsplit

import httpx

from broker.audio import from_pcm16
from broker.errors import (
    ConfigError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    ProtocolError,
)

from .engine import CancelToken, EngineChunk, SynthesisRequest
from .netstream import check_timeouts, relay
from .pcm_stream import PcmShaper
from .voices import VoiceMap

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_MODEL = "eleven_flash_v2_5"  # the lowest-latency model
PCM_RATES = (16_000, 22_050, 24_000, 44_100)  # the pcm_* output formats the API offers
_MAX_ERROR_BODY = 4096


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """Per-request overrides of the voice's stored settings (ElevenLabs' ``voice_settings``)."""

    stability: float = 0.5
    similarity_boost: float = 0.75
    style: float = 0.0
    use_speaker_boost: bool = True
    speed: float = 1.0


def choose_pcm_rate(requested: int, offered: Sequence[int]) -> int:
    """The requested rate if offered, else the lowest offered rate above it, else the highest."""
    rates = sorted(offered)
    if requested in rates:
        return requested
    above = [r for r in rates if r > requested]
    return above[0] if above else rates[-1]


class ElevenLabsEngine:
    name = "elevenlabs"

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        model_id: str = DEFAULT_MODEL,
        *,
        voices: VoiceMap | None = None,
        voice_settings: VoiceSettings | None = None,
        output_rates: Sequence[int] = (16_000, 22_050, 24_000),
        connect_timeout: float = 1.5,
        first_byte_timeout: float = 3.0,
        stall_timeout: float = 2.0,
        chunk_ms: int = 40,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("ElevenLabs API key is empty")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ElevenLabs base URL must be http(s)://host[:port], got {base_url!r}")
        bad_rates = [r for r in output_rates if r not in PCM_RATES]
        if not output_rates or bad_rates:
            raise ConfigError(f"ElevenLabs output rates must be among {PCM_RATES}, got {list(output_rates)}")
        check_timeouts(
            "ElevenLabs",
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            stall_timeout=stall_timeout,
        )
        self._api_key = api_key.strip()
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.voices = voices or VoiceMap()
        self.voice_settings = voice_settings
        self.output_rates = tuple(output_rates)
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.stall_timeout = stall_timeout
        self.chunk_ms = chunk_ms
        # One pooled client per engine keeps TLS connections warm between sentences. Reads have no
        # httpx timeout: the first-byte and stall deadlines below govern them.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=connect_timeout, read=None, write=first_byte_timeout, pool=connect_timeout
            ),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=30.0),
        )

    def __repr__(self) -> str:
        return f"ElevenLabsEngine(base_url={self.base_url!r}, model_id={self.model_id!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ElevenLabsEngine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        cancel.check("synthesis cancelled")
        if not request.text.strip():
            raise EngineError("nothing to say: empty text", code="empty_text")
        try:
            voice_id = self.voices.get(request.voice).elevenlabs_voice_id
        except ProtocolError as exc:
            raise EngineError(str(exc), code=exc.code) from exc
        rate = choose_pcm_rate(request.sample_rate, self.output_rates)
        shaper = PcmShaper(rate, request.sample_rate, self.chunk_ms)
        carry = b""
        async for received in relay(
            self._stream(voice_id, request.text, rate), cancel, name="elevenlabs-stream"
        ):
            data = carry + received
            even = len(data) - len(data) % 2  # a network chunk may split a sample
            carry = data[even:]
            for chunk in shaper.feed(from_pcm16(data[:even])):
                cancel.check("synthesis cancelled")
                yield chunk
        for chunk in shaper.flush():
            yield chunk

    async def _stream(self, voice_id: str, text: str, rate: int) -> AsyncGenerator[bytes, None]:
        """The network side: yields PCM bytes as they arrive; raises typed errors. Runs in its own task."""
        body: dict[str, object] = {"text": text, "model_id": self.model_id}
        if self.voice_settings is not None:
            body["voice_settings"] = asdict(self.voice_settings)
        request = self._client.build_request(
            "POST",
            f"{self.base_url}/v1/text-to-speech/{quote(voice_id, safe='')}/stream",
            params={"output_format": f"pcm_{rate}"},
            headers={"xi-api-key": self._api_key, "accept": "audio/pcm, application/json"},
            json=body,
        )
        response: httpx.Response | None = None
        loop = asyncio.get_running_loop()
        try:
            try:
                # Until connected, httpx's connect/pool timeouts rule (this outer bound is a backstop);
                # once the request goes out on a connection, the first byte has first_byte_timeout.
                async with asyncio.timeout(self.connect_timeout + self.first_byte_timeout) as deadline:

                    async def trace(event: str, info: dict[str, object]) -> None:
                        if event.endswith("send_request_headers.started"):
                            deadline.reschedule(loop.time() + self.first_byte_timeout)

                    request.extensions["trace"] = trace
                    response = await self._client.send(request, stream=True)
                    if response.status_code != 200:
                        raise _status_error(response.status_code, await _read_some(response))
                    if response.headers.get("content-type", "").startswith("application/json"):
                        raise EngineError(
                            "ElevenLabs answered 200 with JSON instead of audio", code="bad_response"
                        )
                    chunks = response.aiter_bytes()
                    first = await anext(chunks, None)
            except TimeoutError as exc:
                raise EngineTimeout(
                    f"ElevenLabs sent no audio within {self.first_byte_timeout:.2f}s",
                    code="first_byte_timeout",
                ) from exc
            if not first:
                raise EngineError("ElevenLabs returned an empty audio stream", code="no_audio")
            yield first
            while True:
                try:
                    async with asyncio.timeout(self.stall_timeout):
                        data = await anext(chunks, None)
                except TimeoutError as exc:
                    raise EngineTimeout(
                        f"ElevenLabs audio stalled for {self.stall_timeout:.2f}s", code="stall"
                    ) from exc
                if data is None:
                    return
                yield data
        except httpx.ConnectTimeout as exc:
            raise EngineUnavailable(
                f"ElevenLabs: no connection within {self.connect_timeout:.2f}s", code="connect_timeout"
            ) from exc
        except httpx.ConnectError as exc:
            raise EngineUnavailable(
                f"ElevenLabs unreachable: {type(exc).__name__}", code="unreachable"
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineError("ElevenLabs connection dropped mid-stream", code="stream_broken") from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"ElevenLabs timed out: {type(exc).__name__}", code="timeout") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"ElevenLabs request failed: {type(exc).__name__}", code="http_error") from exc
        finally:
            if response is not None:
                await response.aclose()


async def _read_some(response: httpx.Response) -> bytes:
    out = bytearray()
    async for data in response.aiter_bytes():
        out += data
        if len(out) >= _MAX_ERROR_BODY:
            break
    return bytes(out[:_MAX_ERROR_BODY])


def _detail(body: bytes) -> str:
    """ElevenLabs' short error status ({"detail": {"status": ..., "message": ...}}), if any."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    if isinstance(detail, dict):
        return str(detail.get("status") or detail.get("message") or "")[:80]
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", ""))[:80]
    return str(detail)[:80] if isinstance(detail, str) else ""


def _status_error(status: int, body: bytes) -> EngineError:
    detail = _detail(body)
    message = f"ElevenLabs answered HTTP {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return EngineUnavailable(message, code="auth_failed")
    if status == 429:
        return EngineError(message, code="rate_limited")
    if status >= 500:
        return EngineError(message, code="upstream_error")
    return EngineError(message, code="bad_request")
