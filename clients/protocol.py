"""The client side of websocket protocol v1 (docs/protocol.md): one place to speak it from Python.

``encode`` turns a client message into the JSON text frame to send; ``decode`` turns any frame the
server sends into a typed value: a server message (``Ready``, ``SentenceStart``, ``SentenceEnd``,
``TurnEnd``, ``Fallback``, ``Cancelled``, ``Reconnect``, ``Error``) or, for a binary frame, an ``AudioFrame``.
Anything else raises ``ProtocolError``. The load tester, replay, the benchmarks and the tests all
use this module, so they read the protocol exactly as the server's registries write it.
"""

from __future__ import annotations

from typing import TypeVar

from broker.audio import AudioFrame
from broker.errors import ProtocolError
from broker.ws_protocol import (
    PROTOCOL_VERSION,
    Cancelled,
    CancelTurn,
    Error,
    Fallback,
    Flush,
    Ready,
    Reconnect,
    SentenceEnd,
    SentenceStart,
    Speak,
    Start,
    Text,
    TurnEnd,
    server_messages,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AudioFrame",
    "CancelTurn",
    "Cancelled",
    "ClientMessage",
    "Error",
    "Fallback",
    "Flush",
    "Ready",
    "Reconnect",
    "SentenceEnd",
    "SentenceStart",
    "ServerMessage",
    "Speak",
    "Start",
    "Text",
    "TurnEnd",
    "decode",
    "encode",
    "expect",
]

ClientMessage = Start | Text | Flush | Speak | CancelTurn
ServerMessage = Ready | SentenceStart | SentenceEnd | TurnEnd | Error | Fallback | Cancelled | Reconnect
_SERVER_TYPES = (Ready, SentenceStart, SentenceEnd, TurnEnd, Error, Fallback, Cancelled, Reconnect)

M = TypeVar("M", Ready, SentenceStart, SentenceEnd, TurnEnd, Fallback, Cancelled, Reconnect)


def encode(msg: ClientMessage) -> str:
    """The text frame for ``msg``."""
    return msg.to_json()


def decode(raw: str | bytes) -> ServerMessage | AudioFrame:
    """A frame from the server, typed. Raises ProtocolError for anything the protocol does not have."""
    if isinstance(raw, bytes):
        return AudioFrame.from_bytes(raw)
    msg = server_messages.decode(raw)
    if not isinstance(msg, _SERVER_TYPES):  # every registered server type is listed above
        raise ProtocolError(f"unexpected server message {msg.type!r}", code="unknown_type")
    return msg


def expect(raw: str | bytes, kind: type[M]) -> M | None:
    """``raw`` decoded if it is a ``kind``; None for another message; an ``Error`` frame raises
    ``ProtocolError`` with its code; audio here raises ``unexpected_audio``."""
    msg = decode(raw)
    if isinstance(msg, AudioFrame):
        raise ProtocolError(f"audio before {kind.type}", code="unexpected_audio")
    if isinstance(msg, kind):
        return msg
    if isinstance(msg, Error):
        raise ProtocolError(msg.message, code=msg.code)
    return None
