"""Websocket sessions that listen, for the first-audio benches (gateway_overhead.py, ttfa_timeline.py).

The gateway paces a session by its listener's playback (issue 24's lookahead, core/lookahead.py):
a turn sent while the session's earlier audio is still "playing" (sent at real time from when it
arrived) may be held until it has played. A bench that sends turn after turn on one session
without listening therefore measures that hold, not the path (both benches read over a second
before this helper). Playing each turn out on one session before the next is honest but slow (an
espeak-ng sentence is ~2.5 s of audio). So a bench speaks on a pool of sessions: each turn goes to
the session whose listener has heard everything it was sent (first frame + the turn's audio at
real time, plus a margin), waiting only when none has. Every measured turn is then a first
sentence on a session that is not playing: what a listener who speaks after hearing the answer
out gets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from clients import protocol

MARGIN_S = 0.05  # beyond the turn's audio: the gateway's playback clock started before ours


@dataclass(frozen=True, slots=True)
class Turn:
    session_id: str
    seq: int
    sent: float  # time.monotonic() when ``speak`` was sent
    first: float  # time.monotonic() when the first audio frame arrived (before decoding it)

    @property
    def first_audio_s(self) -> float:
        return self.first - self.sent


class ReadStamped(ClientConnection):
    """A client connection that notes when it read its first binary frame since ``arm()``."""

    binary_read_at: float | None = None

    def arm(self) -> None:
        self.binary_read_at = None

    def process_event(self, event: Event) -> None:
        if self.binary_read_at is None and isinstance(event, Frame) and event.opcode is Opcode.BINARY:
            self.binary_read_at = time.monotonic()
        super().process_event(event)


class ListeningSessions:
    """``size`` websocket sessions on one gateway; ``speak`` uses one that has heard its audio out."""

    def __init__(self, ws_url: str, size: int, voice: str | None = None) -> None:
        self.ws_url, self.size, self.voice = ws_url, size, voice
        self._ws: list[ReadStamped] = []
        self._ids: list[str] = []
        self._rates: list[int] = []
        self._free_at: list[float] = []
        self.waits = 0  # turns that waited for a listener to hear its last turn out

    async def __aenter__(self) -> ListeningSessions:
        for _ in range(self.size):
            ws = await connect(self.ws_url, create_connection=ReadStamped)
            assert isinstance(ws, ReadStamped)
            await ws.send(protocol.encode(protocol.Start(voice=self.voice)))
            ready = protocol.decode(await ws.recv())
            if not isinstance(ready, protocol.Ready):
                raise TypeError(f"expected ready, got {ready}")
            self._ws.append(ws)
            self._ids.append(ready.session_id)
            self._rates.append(ready.sample_rate)
            self._free_at.append(0.0)
        return self

    async def __aexit__(self, *_: object) -> None:
        for ws in self._ws:
            await ws.close()

    async def speak(self, text: str) -> Turn:
        """Speak ``text`` as one turn on a session whose listener is not playing; its first audio."""
        i = min(range(self.size), key=self._free_at.__getitem__)
        wait = self._free_at[i] - time.monotonic()
        if wait > 0:
            self.waits += 1
            await asyncio.sleep(wait)  # every listener is still hearing its last turn
        ws = self._ws[i]
        ws.arm()
        sent = time.monotonic()
        await ws.send(protocol.encode(protocol.Speak(text)))
        first: float | None = None
        seq: int | None = None
        samples = 0
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes) and first is None:
                first = ws.binary_read_at  # as read, before decoding, as a player would start
            match protocol.decode(raw):
                case protocol.SentenceStart(seq=s) if seq is None:
                    seq = s
                case protocol.SentenceEnd(samples=n):
                    samples += n
                case protocol.Error() as error:
                    raise RuntimeError(f"gateway error: {error}")
                case protocol.TurnEnd():
                    break
        if first is None or seq is None:
            raise RuntimeError(f"no audio for {text!r}")
        self._free_at[i] = first + samples / self._rates[i] + MARGIN_S
        return Turn(self._ids[i], seq, sent, first)
