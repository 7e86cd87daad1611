"""What a ``SessionCore`` (core/session.py) returns for its caller to carry out. Pure data.

- ``Emit``: a JSON message for the client (and the session's MQTT events topic);
- ``EmitAudio``: a binary audio frame;
- ``EncodeAudio``: a whole sentence to encode (mp3, ogg, flac, wav) off the event loop, then send as
  one frame, in its place among the session's messages;
- ``Dispatch``: a sentence to synthesize (to the scheduler);
- ``CancelJobs``: drop the session's jobs (barge-in); ``TurnOver``: a turn ended (sticky fallback lifts).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.wire import Message
from stream_server.core.actions import Sentence


@dataclass(frozen=True, slots=True)
class Emit:
    message: Message


@dataclass(frozen=True, slots=True)
class EmitAudio:
    frame: bytes
    seq: int
    seconds: float = 0.0  # of audio (the session's playback clock follows it)


@dataclass(frozen=True, slots=True)
class EncodeAudio:
    seq: int
    sample_rate: int
    fmt: str
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Dispatch:
    sentence: Sentence


@dataclass(frozen=True, slots=True)
class CancelJobs:
    session_id: str


@dataclass(frozen=True, slots=True)
class TurnOver:
    session_id: str
    turn: int


Out = Emit | EmitAudio | EncodeAudio | Dispatch | CancelJobs | TurnOver
