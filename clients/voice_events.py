"""What ``VoiceClient`` yields: typed events for each sentence and turn, and its one error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from broker.audio import Encoding, from_pcm16
from broker.errors import SesameError


class ConnectionLost(SesameError):
    """The gateway could not be reached again within the reconnect attempts."""

    code = "connection_lost"


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    sample_rate: int
    format: str
    voice: str
    resumed: bool = False  # True after a reconnect that found the session
    received: int = 0  # on resume: how many of this session's client frames the gateway has


@dataclass(frozen=True, slots=True)
class SentenceStarted:
    seq: int
    turn: int
    text: str
    engine: str
    cached: bool
    restart: bool  # an engine failed mid-sentence: drop what was not played of this seq


@dataclass(frozen=True, slots=True)
class AudioChunk:
    seq: int
    index: int
    sample_rate: int
    payload: bytes
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class SentenceAudio:
    """One whole sentence: pcm16 samples (or one encoded file with format wav/flac/ogg/mp3)."""

    seq: int
    turn: int
    text: str
    engine: str
    cached: bool
    sample_rate: int
    audio: bytes
    samples: int

    def pcm(self) -> npt.NDArray[np.float32]:
        return from_pcm16(self.audio)


@dataclass(frozen=True, slots=True)
class SentenceFailed:
    """No voice could speak sentence ``seq`` (``text``), or bad input (seq and text are None)."""

    code: str
    message: str
    seq: int | None
    text: str | None


@dataclass(frozen=True, slots=True)
class FellBack:
    seq: int
    from_engine: str
    to_engine: str
    reason: str


@dataclass(frozen=True, slots=True)
class TurnEnded:
    turn: int


@dataclass(frozen=True, slots=True)
class TurnCancelled:
    turn: int


@dataclass(frozen=True, slots=True)
class Reconnecting:
    attempt: int
    delay_s: float
    close_code: int | None


Event = (
    Connected
    | SentenceStarted
    | AudioChunk
    | SentenceAudio
    | SentenceFailed
    | FellBack
    | TurnEnded
    | TurnCancelled
    | Reconnecting
)
