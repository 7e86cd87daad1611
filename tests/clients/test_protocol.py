"""clients/protocol.py reads exactly what the server writes: every server message round-trips
through the one server registry (the ``fallback`` frame's "from"/"to" included), and every client
message the module encodes is what the server's registry decodes."""

from __future__ import annotations

import pytest

from broker.audio import AudioFrame
from broker.errors import ProtocolError
from broker.ws_protocol import client_messages, server_messages
from clients import protocol

SERVER = [
    protocol.Ready("s1", 24_000, "pcm16", "maya"),
    protocol.SentenceStart(0, 0, "Hello.", "bark", cached=True, restart=False),
    protocol.SentenceEnd(0, 24_000),
    protocol.TurnEnd(3),
    protocol.Error("speech_unavailable", "no voice", seq=2, text="Hi."),
    protocol.Error("rate_limited", "slow down"),
    protocol.Fallback(1, "worker_dead", "bark", "espeak-ng"),
    protocol.Cancelled(2),
    protocol.Reconnect("gateway_reload", 0),
]


def test_every_server_message_type_is_covered() -> None:
    assert sorted({m.type for m in SERVER}) == server_messages.types


@pytest.mark.parametrize("msg", SERVER, ids=lambda m: m.type)
def test_server_messages_round_trip(msg: protocol.ServerMessage) -> None:
    assert server_messages.decode(msg.to_json()) == msg
    assert protocol.decode(msg.to_json()) == msg


def test_fallback_uses_the_wire_names() -> None:
    wire = protocol.Fallback(1, "stall", "bark", "edge-tts").to_dict()
    assert wire == {"type": "fallback", "seq": 1, "reason": "stall", "from": "bark", "to": "edge-tts"}
    with pytest.raises(ProtocolError):
        server_messages.decode('{"type":"fallback","seq":1,"reason":"x","from_engine":"a","to_engine":"b"}')


@pytest.mark.parametrize(
    "msg",
    [
        protocol.Start(voice="maya", format="wav", sample_rate=16_000),
        protocol.Text("Hello"),
        protocol.Flush(),
        protocol.Speak("Hello."),
        protocol.CancelTurn(),
    ],
    ids=lambda m: m.type,
)
def test_client_messages_encode_to_what_the_server_decodes(msg: protocol.ClientMessage) -> None:
    assert client_messages.decode(protocol.encode(msg)) == msg


def test_binary_frames_decode_as_audio() -> None:
    frame = AudioFrame(3, 1, 24_000, b"\x00\x01" * 10)
    assert protocol.decode(frame.to_bytes()) == frame


@pytest.mark.parametrize("raw", ["{}", '{"type":"speak","text":"x"}', "not json", '{"type":"ready"}'])
def test_anything_else_is_a_protocol_error(raw: str) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(raw)


def test_expect_raises_an_error_frame_and_skips_others() -> None:
    assert protocol.expect(protocol.TurnEnd(1).to_json(), protocol.Ready) is None
    ready = protocol.Ready("s", 24_000, "pcm16", "maya")
    assert protocol.expect(ready.to_json(), protocol.Ready) == ready
    with pytest.raises(ProtocolError) as err:
        protocol.expect(protocol.Error("overloaded", "full").to_json(), protocol.Ready)
    assert err.value.code == "overloaded"
