"""Routing what arrives on MQTT: the topic is parsed into a typed value, then matched.

Worker replies (ack, done, job_error, audio), heartbeats and retained statuses feed the scheduler
and the job tracker; text published on a session's text topic is spoken in that session (text for
a session another gateway holds is ignored); open/flush/cancel/close/claim go to
``mqtt_sessions``. Anything
that does not parse raises ``ProtocolError`` (the hub counts and logs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from broker.audio import AudioFrame
from broker.errors import ProtocolError
from broker.messages import Heartbeat, JobAck, JobDone, JobError, WorkerStatus, worker_messages
from broker.topics import ReplyTopic, SessionTopic, WorkerTopic, parse
from broker.ws_protocol import Flush, SessionText, Text, session_text_messages
from stream_server.core.actions import Action
from stream_server.core.jobs import JobTracker
from stream_server.core.scheduler import Scheduler
from stream_server.core.stamps import HopStamps
from stream_server.hub.ports import SessionHost
from stream_server.mqtt.topic_sessions import MqttSessions


class InboundHost(SessionHost, Protocol):
    """What the routing of MQTT messages needs of the hub."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def jobs(self) -> JobTracker: ...

    @property
    def stamps(self) -> HopStamps | None: ...

    @property
    def mqtt_sessions(self) -> MqttSessions: ...

    @property
    def observers(self) -> Callable[[Action | Heartbeat], None]: ...

    def feed(self, work: Iterable[Action]) -> None: ...

    def audio(self, job_id: str, pcm: bytes) -> None: ...


def route(hub: InboundHost, topic: str, payload: bytes) -> None:
    match parse(topic):
        case ReplyTopic(gateway_id=gateway_id, job_id=job_id, kind=kind):
            if gateway_id != hub.config.gateway_id:
                raise ProtocolError(f"a reply for gateway {gateway_id!r}", code="bad_topic")
            if kind == "audio":
                _audio(hub, job_id, payload)
            else:
                _job_event(hub, job_id, payload)
        case WorkerTopic(worker_id=worker_id, kind="heartbeat"):
            hb = worker_messages.decode(payload)
            if not isinstance(hb, Heartbeat) or hb.worker_id != worker_id:
                raise ProtocolError("heartbeat topic and payload disagree", code="bad_heartbeat")
            actions = hub.scheduler.heartbeat(hb, hub.clock())
            hub.observers(hb)
            hub.feed(actions)
        case WorkerTopic(worker_id=worker_id, kind="status"):
            st = worker_messages.decode(payload)
            if not isinstance(st, WorkerStatus) or st.worker_id != worker_id:
                raise ProtocolError("status topic and payload disagree", code="bad_status")
            hub.feed(hub.scheduler.status(st, hub.clock()))
        case SessionTopic(session_id=session_id, kind="text"):
            _text(hub, session_id, payload)
        case SessionTopic(
            session_id=session_id, kind="open" | "flush" | "cancel" | "close" | "claim" as kind
        ):
            hub.mqtt_sessions.handle(kind, session_id, payload)
        case other:
            raise ProtocolError(f"the gateway does not take {other!r}", code="bad_topic")


def _text(hub: InboundHost, session_id: str, payload: bytes) -> None:
    link = hub.sessions.get(session_id)
    if link is None:
        hub.mqtt_sessions.unknown(session_id)  # quiet when another gateway holds it
        return
    hub.mqtt_sessions.touched(session_id)
    try:
        msg = session_text_messages.decode(payload)
        assert isinstance(msg, SessionText)
        hub.receive(link, Text(msg.text))
        if msg.flush:
            hub.receive(link, Flush())
    except ProtocolError as exc:
        hub.refuse(link, exc, path="mqtt")


def _audio(hub: InboundHost, job_id: str, payload: bytes) -> None:
    frame = AudioFrame.from_bytes(payload)
    complete = hub.jobs.chunk(job_id)
    hub.audio(job_id, frame.payload)
    if complete:
        hub.feed(hub.scheduler.done(job_id, hub.clock()))


def _job_event(hub: InboundHost, job_id: str, payload: bytes) -> None:
    now = hub.clock()
    match worker_messages.decode(payload):
        case JobAck(queue_position=pos):
            hub.feed(hub.scheduler.ack(job_id, now, pos))
        case JobDone(chunks=chunks, stamps=stamps):
            if stamps and hub.stamps is not None:
                hub.stamps.worker(job_id, stamps)
            # Audio and events travel on two topics; wait until every chunk is here.
            if hub.jobs.done(job_id, chunks):
                hub.feed(hub.scheduler.done(job_id, now))
        case JobError(code=code):
            hub.feed(hub.scheduler.failed(job_id, code, now))
        case msg:
            raise ProtocolError(f"unexpected {msg.type!r} on a reply topic", code="unexpected_message")
