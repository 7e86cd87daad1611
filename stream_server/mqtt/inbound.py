"""Routing what arrives on MQTT: the topic is parsed into a typed value, then matched.

Worker replies (ack, done, job_error, audio), heartbeats and retained statuses feed the scheduler
and the job tracker. A reply counts only when its topic's worker level (which the broker's ACL
authenticates) names the worker the job was sent to; one from another worker is dropped, counted
(``sesame_bad_input_total{path="mqtt",code="wrong_worker"}``) and logged once per worker, so a
forged reply never reaches a session or the sentence cache. A worker whose id is a role name
(``broker.credentials.ROLES``: a role user could pose as it) is not taken. Text published on a
session's text topic is spoken in that session (text for a session another gateway holds is
ignored); open/flush/cancel/close/claim go to
``mqtt_sessions``. Anything
that does not parse raises ``ProtocolError`` (the hub counts and logs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from broker import logs
from broker.audio import AudioFrame
from broker.credentials import is_role
from broker.errors import ProtocolError
from broker.messages import Heartbeat, JobAck, JobDone, JobError, WorkerStatus, worker_messages
from broker.topics import ReplyTopic, SessionTopic, WorkerTopic, parse
from broker.wire import Message
from stream_server.core.actions import Action, Cause
from stream_server.core.jobs import JobTracker, Sender
from stream_server.core.scheduler import Scheduler
from stream_server.core.stamps import HopStamps
from stream_server.hub.ports import SessionHost
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.topic_sessions import MqttSessions

log = logs.get("sesame.mqtt_in")


class InboundHost(SessionHost, Protocol):
    """What the routing of MQTT messages needs of the hub."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def metrics(self) -> Metrics: ...

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
        case ReplyTopic(gateway_id=gateway_id, worker_id=worker_id, job_id=job_id, kind=kind):
            if gateway_id != hub.config.gateway_id:
                raise ProtocolError(f"a reply for gateway {gateway_id!r}", code="bad_topic")
            if kind == "audio":
                frame = AudioFrame.from_bytes(payload)  # bad input is counted whoever sent it
                if _from_assigned(hub, worker_id, job_id):
                    _audio(hub, job_id, frame)
            else:
                event = _reply_event(worker_id, job_id, payload)
                if _from_assigned(hub, worker_id, job_id):
                    _job_event(hub, job_id, event)
        case WorkerTopic(worker_id=worker_id) if is_role(worker_id):
            raise ProtocolError(f"{worker_id!r} is a role, not a worker", code="role_not_worker")
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
            hub.mqtt_sessions.text(session_id, payload)
        case SessionTopic(
            session_id=session_id, kind="open" | "flush" | "cancel" | "close" | "claim" as kind
        ):
            hub.mqtt_sessions.handle(kind, session_id, payload)
        case other:
            raise ProtocolError(f"the gateway does not take {other!r}", code="bad_topic")


def _from_assigned(hub: InboundHost, worker_id: str, job_id: str) -> bool:
    """Whether this reply comes from the worker the job was sent to (else it is dropped)."""
    sender = hub.jobs.sender(job_id, worker_id)
    if sender in (Sender.WRONG, Sender.WRONG_FIRST):
        hub.metrics.bad_input.labels("mqtt", "wrong_worker").inc()
        if sender is Sender.WRONG_FIRST:
            log.warning("reply_from_wrong_worker", worker_id=worker_id, job_id=job_id)
    return sender is Sender.ASSIGNED


def _audio(hub: InboundHost, job_id: str, frame: AudioFrame) -> None:
    complete = hub.jobs.chunk(job_id)
    hub.audio(job_id, frame.payload)
    if complete:
        hub.feed(hub.scheduler.done(job_id, hub.clock()))


def _reply_event(worker_id: str, job_id: str, payload: bytes) -> Message:
    event = worker_messages.decode(payload)
    if not isinstance(event, JobAck | JobDone | JobError):
        raise ProtocolError(f"unexpected {event.type!r} on a reply topic", code="unexpected_message")
    if (event.worker_id, event.job_id) != (worker_id, job_id):
        raise ProtocolError("reply topic and payload disagree", code="bad_reply")
    return event


def _job_event(hub: InboundHost, job_id: str, event: Message) -> None:
    now = hub.clock()
    match event:
        case JobAck(queue_position=pos):
            hub.feed(hub.scheduler.ack(job_id, now, pos))
        case JobDone(chunks=chunks, stamps=stamps):
            if stamps and hub.stamps is not None:
                hub.stamps.worker(job_id, stamps)
            # Audio and events travel on two topics; wait until every chunk is here.
            if hub.jobs.done(job_id, chunks):
                hub.feed(hub.scheduler.done(job_id, now))
        case JobError(code="overloaded"):
            # It cannot meet this need: busy, not broken; the job goes elsewhere, no cool-down
            # (a cool-down would send every sentence of the next second to a fallback voice).
            hub.feed(hub.scheduler.failed(job_id, "overloaded", now, Cause.BUSY))
        case JobError(code=code):
            hub.feed(hub.scheduler.failed(job_id, code, now))
        case msg:
            raise ProtocolError(f"unexpected {msg.type!r} on a reply topic", code="unexpected_message")
