"""One pass of the hub (stream_server/hub/send_pass.py): what sockets are sent in it leaves when it
ends, each socket's frames before the sessions' copies on MQTT (hub/session_copies.py); outside a
pass a copy is published at once; a pass flushes each holder once."""

from __future__ import annotations

from typing import Any

from broker.ws_protocol import SentenceStart
from stream_server.hub.send_pass import SendPass
from stream_server.hub.session_copies import SessionCopies


class Socket:
    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order = name, order

    def flush(self) -> None:
        self.order.append(f"frames {self.name}")


class Out:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    def send(self, item: Any, control: bool = True) -> None:
        assert control is False  # copies never go on the control queue
        self.order.append(f"copy {item.topic} {item.payload[:20]!r}")


def test_copies_made_in_a_pass_go_after_its_frames_and_at_once_outside_one() -> None:
    order: list[str] = []
    send_pass = SendPass()
    copies = SessionCopies(Out(order), send_pass, enabled=True)  # type: ignore[arg-type]
    copies.audio("s-1", b"before")
    assert order == ["copy sesame/v1/sessions/s-1/audio b'before'"]
    order.clear()
    send_pass.begin()
    send_pass.hold(Socket("a", order))
    copies.event("s-1", SentenceStart(0, 1, "Hi.", "piper"))
    send_pass.hold(Socket("b", order))
    copies.audio("s-2", b"pcm")
    assert order == []
    send_pass.end()
    assert order == [
        "frames a",
        "frames b",
        'copy sesame/v1/sessions/s-1/events b\'{"type":"sentence_st\'',
        "copy sesame/v1/sessions/s-2/audio b'pcm'",
    ]
    order.clear()
    send_pass.begin()
    send_pass.end()  # each holder was flushed once: nothing is left to flush again
    assert order == [] and not send_pass.open


def test_no_copy_is_made_when_session_events_are_off() -> None:
    order: list[str] = []
    send_pass = SendPass()
    copies = SessionCopies(Out(order), send_pass, enabled=False)  # type: ignore[arg-type]
    copies.audio("s-1", b"pcm")
    send_pass.begin()
    copies.event("s-1", SentenceStart(0, 1, "Hi.", "piper"))
    send_pass.end()
    assert order == []
