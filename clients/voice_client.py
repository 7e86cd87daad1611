"""An async Python client for sesame-voice's websocket protocol v1 (docs/python-client.md), built
on ``clients/protocol.py`` (every server frame decoded by the server's own registries).

    async with VoiceClient("ws://127.0.0.1:8000/ws") as voice:
        await voice.stream(llm_tokens())          # or send_text(...) / flush() / speak(...)
        async for event in voice.events():
            match event:
                case SentenceAudio(text=text, engine=engine, audio=pcm): play(pcm)
                case SentenceFailed(text=text): show(text)   # no voice could speak it
                case TurnEnded(): break

``events()`` yields typed events: the sentences of each turn in order, each once, with its audio,
text and the engine that spoke it; the audio frames as they arrive (``AudioChunk``) for a player
that starts before a sentence ends; fallbacks, errors, turn ends and cancels. ``cancel()`` is
barge-in.

Reconnect: when the gateway closes with 1012 (service restart) or the socket drops, the client
reconnects with jittered exponential backoff and resumes the session: it opens
``/ws?session_id=ID&resume_token=T&heard=N`` where T is the resume token of the last ``ready`` it
got (the secret that makes it the session's owner; docs/security.md) and N counts the server
frames it has received, and the gateway
that holds the session answers ``ready`` with ``resumed: true`` and ``received`` (the client frames
it has), then sends frame N onward. The client resends its own frames after ``received``. No
sentence is lost or heard twice. When no gateway holds the session any more (it was restarted),
the answer is a fresh session; the client then sends the text of the turn not yet heard, so the
turn still goes on with nothing lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from broker.errors import ProtocolError
from clients.endpoint import configured_url, gateway_urls
from clients.reconnect import Backoff, consume, with_query
from clients.voice_events import (
    AudioChunk,
    Connected,
    ConnectionLost,
    Event,
    FellBack,
    Reconnecting,
    SentenceAudio,
    SentenceFailed,
    SentenceStarted,
    TurnCancelled,
    TurnEnded,
)

from .protocol import (
    AudioFrame,
    Cancelled,
    CancelTurn,
    Error,
    Fallback,
    Flush,
    Ready,
    SentenceEnd,
    SentenceStart,
    ServerMessage,
    Start,
    Text,
    TurnEnd,
    decode,
    encode,
)

FORMATS = ("pcm16", "wav", "flac", "ogg", "mp3")

RECONNECT_CODES = frozenset({1012, 1006, 1011, 1001})  # restart, dropped, server error, going away


@dataclass(slots=True)
class _Current:
    start: SentenceStarted
    chunks: list[bytes] = field(default_factory=list)
    sample_rate: int = 0


class VoiceClient:
    """One conversation with a gateway. Use as an async context manager."""

    def __init__(
        self,
        url: str | None = None,
        *,
        voice: str | None = None,
        format: str = "pcm16",
        sample_rate: int = 24_000,
        token: str | None = None,
        backoff: Backoff = Backoff(),  # noqa: B008 (a frozen dataclass)
        open_timeout_s: float = 10.0,
    ) -> None:
        url = gateway_urls(url or configured_url()).ws  # http(s) base or ws(s) URL; else BadUrl
        self.url = with_query(url, token=token) if token else url
        self.backoff = backoff
        self.open_timeout_s = open_timeout_s
        if format not in FORMATS:
            raise ProtocolError(f"format must be one of {', '.join(FORMATS)}", code="bad_field")
        self._start = encode(Start(voice, format, sample_rate))  # type: ignore[arg-type]
        self._custom_start = voice is not None or format != "pcm16" or sample_rate != 24_000
        self.session_id: str | None = None
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._closing = False
        self._up = asyncio.Event()
        self._heard = 0  # server frames received in this session (after ready)
        self._resume_token: str | None = None  # of the last ready: never logged, never shown
        self._sent: list[str] = []  # every client frame of this session, in order
        self._unheard = ""  # text sent whose sentences have not been heard yet
        self._flushed = False  # a flush followed the last text of _unheard
        self._current: _Current | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> VoiceClient:
        ready = await self._open(self.url)
        self._up.set()
        if self._custom_start:
            await self._send(self._start)
        self._stack = contextlib.AsyncExitStack()
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        tg.create_task(self._reader(ready), name="voice-client-reader")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Closing the socket ends the reader; the TaskGroup then only waits for it. The reader
        # never raises (it hands its errors to events()), so an exception of the body propagates
        # as it is, not wrapped in an ExceptionGroup.
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        await self._stack.aclose()

    async def _open(self, url: str) -> Connected:
        try:
            ws = await connect(url, open_timeout=self.open_timeout_s, close_timeout=1, max_size=1 << 22)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {url}: {exc}") from exc
        try:
            first = decode(await ws.recv())
        except ConnectionClosed as exc:
            raise ConnectionLost(f"the gateway closed the connection: {exc}") from exc
        if isinstance(first, Error):  # e.g. overloaded (closed with 1013): try again later
            await ws.close()
            raise ConnectionLost(f"the gateway refused the session: {first.code}")
        if not isinstance(first, Ready):
            await ws.close()
            raise ProtocolError(f"expected ready, got {type(first).__name__}", code="bad_message")
        self._ws = ws
        self._resume_token = first.resume_token
        return Connected(
            first.session_id, first.sample_rate, first.format, first.voice, first.resumed, first.received
        )

    # ---- sending ---------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Append a text fragment (any piece, even half a word)."""
        self._unheard += text
        self._flushed = False
        await self._send(encode(Text(text)))

    async def flush(self) -> None:
        """End of turn: speak whatever remains."""
        self._flushed = True
        await self._send(encode(Flush()))

    async def speak(self, text: str) -> None:
        await self.send_text(text)
        await self.flush()

    async def stream(self, tokens: AsyncIterable[str], flush: bool = True) -> None:
        """Send an LLM's tokens as they come, then end the turn."""
        async for token in tokens:
            if token:
                await self.send_text(token)
        if flush:
            await self.flush()

    async def cancel(self) -> None:
        """Barge-in: nothing more of the current turn is spoken; answered with TurnCancelled."""
        self._unheard, self._flushed = "", False
        await self._send(encode(CancelTurn()))

    async def _send(self, frame: str) -> None:
        self._sent.append(frame)
        ws = self._ws
        if ws is None or not self._up.is_set():
            return  # reconnecting: the reader sends it once the session is back
        with contextlib.suppress(ConnectionClosed):  # the reader reconnects and resends it
            await ws.send(frame)

    # ---- receiving -------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event until the client is closed; raises ConnectionLost when reconnecting failed."""
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def turn(self) -> list[Event]:
        """The events up to and including the next TurnEnded or TurnCancelled."""
        out: list[Event] = []
        async for event in self.events():
            out.append(event)
            if isinstance(event, (TurnEnded, TurnCancelled)):
                break
        return out

    async def _reader(self, first: Connected) -> None:
        self.session_id = first.session_id
        self._events.put_nowait(first)
        try:
            while True:
                ws = self._ws
                assert ws is not None
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        self._heard += 1
                        self._on_frame(raw)
                code = ws.close_code
                if self._closing or code not in RECONNECT_CODES:
                    return
                await self._reconnect(code)
        except (ConnectionLost, ProtocolError) as exc:
            self._events.put_nowait(exc)
        finally:
            self._events.put_nowait(None)

    async def _reconnect(self, code: int | None) -> None:
        self._up.clear()
        for attempt in range(self.backoff.attempts):
            delay = self.backoff.delay(attempt)
            self._events.put_nowait(Reconnecting(attempt + 1, delay, code))
            await asyncio.sleep(delay)
            assert self.session_id is not None
            url = with_query(
                self.url,
                session_id=self.session_id,
                resume_token=self._resume_token or "",
                heard=str(self._heard),
            )
            try:
                ready = await self._open_resume(url)
            except ConnectionLost:
                continue
            self._events.put_nowait(ready)
            return
        raise ConnectionLost(f"no gateway answered after {self.backoff.attempts} attempts")

    async def _open_resume(self, url: str) -> Connected:
        ready = await self._open(url)
        ws = self._ws
        assert ws is not None
        if ready.resumed and ready.session_id == self.session_id:
            sent_from = ready.received
        else:  # a fresh session: say again what has not been heard yet
            self.session_id, self._heard, self._current = ready.session_id, 0, None
            self._sent = [self._start] if self._custom_start else []
            if self._unheard.strip():
                self._sent.append(encode(Text(self._unheard)))
                if self._flushed:
                    self._sent.append(encode(Flush()))
            sent_from = 0
        try:
            # Frames added while resending are sent too: the loop runs until it has caught up.
            while sent_from < len(self._sent):
                await ws.send(self._sent[sent_from])
                sent_from += 1
        except ConnectionClosed as exc:
            raise ConnectionLost("connection dropped while resending") from exc
        self._up.set()
        return ready

    def _on_frame(self, raw: str | bytes) -> None:
        event = self._decode(decode(raw))
        if event is not None:
            self._events.put_nowait(event)

    def _decode(self, msg: ServerMessage | AudioFrame) -> Event | None:
        match msg:
            case AudioFrame():
                cur = self._current
                if cur is not None and cur.start.seq == msg.seq:
                    cur.chunks.append(msg.payload)
                    cur.sample_rate = msg.sample_rate
                return AudioChunk(msg.seq, msg.index, msg.sample_rate, msg.payload, msg.encoding)
            case SentenceStart():
                start = SentenceStarted(msg.seq, msg.turn, msg.text, msg.engine, msg.cached, msg.restart)
                self._current = _Current(start)
                return start
            case SentenceEnd():
                cur, self._current = self._current, None
                if cur is None:
                    return None
                s = cur.start
                self._delivered(s.seq, s.text)
                audio = b"".join(cur.chunks)
                return SentenceAudio(
                    s.seq, s.turn, s.text, s.engine, s.cached, cur.sample_rate, audio, msg.samples
                )
            case Error(code=code, message=message, seq=seq, text=text):
                if seq is not None and text is not None:
                    self._delivered(seq, text)
                return SentenceFailed(code, message, seq, text)
            case Fallback():
                return FellBack(msg.seq, msg.from_engine, msg.to_engine, msg.reason)
            case TurnEnd():
                self._unheard, self._flushed = "", False
                return TurnEnded(msg.turn)
            case Cancelled():
                self._current = None
                return TurnCancelled(msg.turn)
            case Ready(resume_token=token) if token is not None:
                self._resume_token = token  # every ready makes the previous token void
        return None  # a `ready` that answers a `start`

    def _delivered(self, seq: int, text: str) -> None:
        self._unheard = consume(self._unheard, text)
