"""One pass of the hub (stream_server/hub/send_pass.py): what sockets are sent in it leaves when it
ends, each socket's frames before the sessions' copies on MQTT (hub/session_copies.py); outside a
pass a copy is published at once; a pass flushes each holder once; a first audio frame leaves
before the job of the sentence it releases (core/lookahead.py)."""

from __future__ import annotations

from typing import Any

from broker import topics
from broker.audio import AudioFrame
from broker.messages import Job, worker_messages
from broker.ws_protocol import SentenceStart, Speak
from stream_server.hub.hub import Hub
from stream_server.hub.send_pass import SendPass
from stream_server.hub.session_copies import SessionCopies
from synth_worker.voices import VoiceMap
from tests.stream_server.test_hub import GW, config, heartbeat
from tests.support.memlink import MemoryLink


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


def test_frames_now_writes_what_is_held_and_the_pass_goes_on() -> None:
    """Before a sentence's job is made in a pass (the first audio releases the next sentence,
    core/lookahead.py): the frame a listener waits for leaves first; the copies still wait."""
    order: list[str] = []
    send_pass = SendPass()
    copies = SessionCopies(Out(order), send_pass, enabled=True)  # type: ignore[arg-type]
    send_pass.begin()
    send_pass.hold(Socket("a", order))
    copies.audio("s-1", b"pcm")
    send_pass.frames_now()
    assert order == ["frames a"] and send_pass.open
    order.append("job")
    send_pass.hold(Socket("a", order))  # a frame made after the job: held again, to the end
    send_pass.end()
    assert order == ["frames a", "job", "frames a", "copy sesame/v1/sessions/s-1/audio b'pcm'"]


class JobsInOrder(MemoryLink):
    def __init__(self, order: list[str]) -> None:
        super().__init__(GW)
        self.order = order

    def publish_now(self, topic: str, payload: bytes | str, **kw: Any) -> Any:
        if topic.endswith("/jobs"):
            self.order.append("job")
        return super().publish_now(topic, payload, **kw)


class HeldFrames:
    """A socket's sender as http/send_now.py holds frames in a pass."""

    def __init__(self, send_pass: SendPass, order: list[str]) -> None:
        self.send_pass, self.order, self.held = send_pass, order, 0

    def __call__(self, item: object) -> bool:
        if not self.held:
            self.send_pass.hold(self)
        self.held += 1
        return True

    def flush(self) -> None:
        self.order.append(f"{self.held} frames")
        self.held = 0


async def test_the_first_audio_frame_leaves_before_the_job_of_the_sentence_it_releases() -> None:
    order: list[str] = []
    mqtt = JobsInOrder(order)
    async with Hub(config(), VoiceMap.load(None, "maya"), {}, link=mqtt) as hub:
        for worker in ("w1", "w2"):  # the second sentence's job goes at once, to the other one
            await mqtt.deliver(topics.worker_heartbeat(worker), heartbeat(worker))
        link = hub.open_session()
        link.send_now = HeldFrames(hub.send_pass, order)
        hub.receive(link, Speak("Hello there. How are you today?"))
        assert order == ["job"]  # the second waits for the first's first audio
        (first,) = [m for p in mqtt.published if isinstance(m := worker_messages.decode(p.payload), Job)]
        pcm = AudioFrame(first.seq, 0, 24_000, b"\x01\x00" * 960).to_bytes()
        await mqtt.deliver(topics.job_audio(first.reply_to, first.job_id), pcm)
        assert order == ["job", "2 frames", "job"]  # sentence_start and the audio, then the job
