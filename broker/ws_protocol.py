"""Websocket protocol v1 (docs/protocol.md): JSON control frames; audio is binary (broker.audio.AudioFrame).

The server -> client messages are also what MQTT subscribers see on a session's events topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from broker.errors import ProtocolError
from broker.wire import Message, Registry

PROTOCOL_VERSION = 1
MAX_TEXT_CHARS = 10_000  # one `text`/`speak` frame
MAX_PENDING_CHARS = 50_000  # text buffered in a session but not yet spoken
AudioFormat = Literal["pcm16", "wav", "flac", "ogg", "mp3"]

client_messages = Registry("client")
server_messages = Registry("server")


def check_text(text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"text longer than {MAX_TEXT_CHARS} characters", code="text_too_long")
    if text.isascii():  # O(1): no surrogate, and no copy made to find out
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone UTF-16 surrogate ("\ud800" in JSON)
        raise ProtocolError("text is not valid Unicode (a lone surrogate)", code="bad_text") from exc


# client -> server ---------------------------------------------------------------------------


@client_messages.register
@dataclass(frozen=True, slots=True)
class Start(Message):
    type = "start"
    voice: str | None = None
    format: AudioFormat = "pcm16"
    sample_rate: int = 24_000

    def validate(self) -> None:
        if self.sample_rate not in (8000, 12000, 16000, 22050, 24000, 44100, 48000):
            raise ProtocolError(
                "sample_rate must be one of 8000, 12000, 16000, 22050, 24000, 44100, 48000",
                code="bad_sample_rate",
            )
        if self.format == "ogg" and self.sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise ProtocolError(
                "ogg/opus needs 8000, 12000, 16000, 24000 or 48000 Hz", code="bad_sample_rate"
            )


@client_messages.register
@dataclass(frozen=True, slots=True)
class Text(Message):
    type = "text"
    text: str

    def validate(self) -> None:
        check_text(self.text)


@client_messages.register
@dataclass(frozen=True, slots=True)
class Flush(Message):
    type = "flush"


@client_messages.register
@dataclass(frozen=True, slots=True)
class Speak(Message):
    type = "speak"
    text: str

    def validate(self) -> None:
        check_text(self.text)


@client_messages.register
@dataclass(frozen=True, slots=True)
class CancelTurn(Message):
    type = "cancel"


# server -> client ---------------------------------------------------------------------------


@server_messages.register
@dataclass(frozen=True, slots=True)
class Ready(Message):
    type = "ready"
    session_id: str
    sample_rate: int
    format: str
    voice: str
    protocol: int = PROTOCOL_VERSION
    resumed: bool = False  # a reconnect picked up this session (docs/protocol.md, resume)
    received: int = 0  # on resume: the client frames of this session the gateway has received
    # The secret a resume needs (``?session_id=&resume_token=&heard=``); new on every ready, only
    # on the websocket (never on MQTT, never logged). None when the session cannot be resumed.
    resume_token: str | None = None


@server_messages.register
@dataclass(frozen=True, slots=True)
class SentenceStart(Message):
    type = "sentence_start"
    seq: int
    turn: int
    text: str
    engine: str
    cached: bool = False
    # True when this sentence was already started by another engine that failed mid-way: the
    # client drops what it has not played of this seq; the sentence is heard again from the start.
    restart: bool = False


@server_messages.register
@dataclass(frozen=True, slots=True)
class SentenceEnd(Message):
    type = "sentence_end"
    seq: int
    samples: int


@server_messages.register
@dataclass(frozen=True, slots=True)
class TurnEnd(Message):
    type = "turn_end"
    turn: int


@server_messages.register
@dataclass(frozen=True, slots=True)
class Error(Message):
    type = "error"
    code: str
    message: str
    seq: int | None = None
    text: str | None = None  # undelivered text when speech could not be produced
    retry_after_ms: int | None = None  # `overloaded`: when to try again


@server_messages.register
@dataclass(frozen=True, slots=True)
class Fallback(Message):
    type = "fallback"
    seq: int
    reason: str
    from_engine: str
    to_engine: str
    # "from" is a Python keyword; the wire names are "from"/"to".
    wire_names: ClassVar[dict[str, str]] = {"from_engine": "from", "to_engine": "to"}


@server_messages.register
@dataclass(frozen=True, slots=True)
class Cancelled(Message):
    type = "cancelled"
    turn: int


@server_messages.register
@dataclass(frozen=True, slots=True)
class Reconnect(Message):
    """This gateway is being replaced: connect again (the socket closes next, with code 1012)."""

    type = "reconnect"
    reason: str = "gateway_reload"
    retry_after_ms: int = 0


# MQTT session text (sesame/v1/sessions/{id}/text): text to append, optionally ending the turn.
@dataclass(frozen=True, slots=True)
class SessionText(Message):
    type = "text"
    text: str
    flush: bool = False

    def validate(self) -> None:
        check_text(self.text)


session_text_messages = Registry("session text")
session_text_messages.register(SessionText)
