"""Sessions over MQTT alone, and the claims that keep several gateways on one broker quiet.

A device or service with no websocket publishes on ``sesame/v1/sessions/{id}/...`` (docs/asyncapi.yaml):

- ``open``: ``{"type":"open","voice":…,"format":…,"sample_rate":…}`` (every field optional; an empty
  payload is ``{"type":"open"}``). It reaches one gateway (shared subscription); that gateway opens
  the session with the publisher's id, claims it (``claims.py``) and publishes ``ready`` on
  ``…/events``.
- ``text`` (as for any session), ``flush``, ``cancel``, ``close``: payload empty or
  ``{"type":"flush"}`` etc.
- The session's events (JSON) and audio frames (binary) go to ``…/events`` and ``…/audio``, as for
  every session; bad input for the session is answered with an ``error`` there.

An MQTT-only session closes on ``close`` or after ``SESAME_MQTT_SESSION_IDLE`` without a message
from its publisher. This module is the adapter; the decisions about claims are ``ClaimBook``'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from broker import logs, topics
from broker.errors import ProtocolError
from broker.wire import Message, Registry
from broker.ws_protocol import AudioFormat, CancelTurn, Flush, Start
from stream_server.core.claims import (
    Claim,
    ClaimAction,
    ClaimBook,
    ClearClaim,
    CountUnknown,
    DropSession,
    PublishClaim,
    claim_messages,
)
from stream_server.hub.live_sessions import CloseReason, SessionLink
from stream_server.hub.ports import SessionHost, TaskHost
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.outbound import MqttOut, Publish

log = logs.get("sesame.mqtt_sessions")

CLAIM_WINDOW_S = 2.0
control_messages = Registry("session control")


@control_messages.register
@dataclass(frozen=True, slots=True)
class Open(Message):
    type = "open"
    voice: str | None = None
    format: AudioFormat = "pcm16"
    sample_rate: int = 24_000

    def validate(self) -> None:
        Start(self.voice, self.format, self.sample_rate).validate()


@control_messages.register
@dataclass(frozen=True, slots=True)
class FlushControl(Message):
    type = "flush"


@control_messages.register
@dataclass(frozen=True, slots=True)
class CancelControl(Message):
    type = "cancel"


@control_messages.register
@dataclass(frozen=True, slots=True)
class CloseControl(Message):
    type = "close"


def decode_control(kind: str, payload: bytes) -> Message:
    """The control message on topic ``kind``: an empty payload is the bare message."""
    msg = control_messages.decode(payload if payload.strip() else f'{{"type":"{kind}"}}'.encode())
    if msg.type != kind:
        raise ProtocolError(f"{msg.type!r} published on the {kind!r} topic", code="bad_message")
    return msg


class TopicSessionHost(SessionHost, TaskHost, Protocol):
    """What ``MqttSessions`` needs of the hub."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def out(self) -> MqttOut: ...

    def publish_event(self, session_id: str, event: Message | ProtocolError) -> None: ...

    def deadline_moved(self) -> None: ...


class MqttSessions:
    def __init__(self, hub: TopicSessionHost) -> None:
        self.hub = hub
        self.claims = ClaimBook(hub.config.gateway_id, CLAIM_WINDOW_S)
        self._last_seen: dict[str, float] = {}  # MQTT-only sessions -> last message from the publisher

    @staticmethod
    def subscriptions() -> list[tuple[str, int]]:
        return [
            (topics.SHARED_SESSION_OPEN, 1),
            (topics.ALL_SESSION_CLAIMS, 1),
            (topics.ALL_SESSION_FLUSH, 1),
            (topics.ALL_SESSION_CANCEL, 1),
            (topics.ALL_SESSION_CLOSE, 1),
        ]

    # ---- from the broker --------------------------------------------------------------------

    def handle(self, kind: str, session_id: str, payload: bytes) -> None:
        if kind == "claim":
            claim = claim_messages.decode(payload) if payload else None
            if claim is not None and not isinstance(claim, Claim):
                raise ProtocolError("not a claim", code="bad_message")
            self._carry_out(self.claims.seen(session_id, claim, self.hub.clock()))
            self.hub.deadline_moved()
            return
        link = self.hub.sessions.get(session_id)
        if link is None:
            if kind == "open":
                self._open(session_id, payload)
            else:
                self.unknown(session_id)
            return
        if session_id in self._last_seen:
            self._last_seen[session_id] = self.hub.clock()
        try:
            msg = decode_control(kind, payload)
        except ProtocolError as exc:
            self.hub.refuse(link, exc, path="mqtt")
            return
        match msg:
            case Open():
                log.info("mqtt_session_open_again", session_id=session_id)  # already ours
            case FlushControl():
                self.hub.receive(link, Flush())
            case CancelControl():
                self.hub.receive(link, CancelTurn())
            case CloseControl():
                self.hub.close_session(link, CloseReason.MQTT_CLOSE)

    def touched(self, session_id: str) -> None:
        """The publisher sent text to one of our MQTT-only sessions."""
        if session_id in self._last_seen:
            self._last_seen[session_id] = self.hub.clock()

    def unknown(self, session_id: str) -> None:
        """Input for a session this gateway does not hold: quiet when another one holds it."""
        if self.claims.held_elsewhere(session_id, self.hub.clock()):
            return
        self.claims.unclaimed_text(session_id, self.hub.clock())
        self.hub.deadline_moved()

    def _open(self, session_id: str, payload: bytes) -> None:
        if self.claims.held_elsewhere(session_id, self.hub.clock()):
            log.info("mqtt_session_held_elsewhere", session_id=session_id)
            return
        try:
            topics.check_id(session_id, "session_id")
            msg = decode_control("open", payload)
            assert isinstance(msg, Open)
            link = self.hub.open_session(msg.voice, msg.sample_rate, msg.format, session_id=session_id)
        except ProtocolError as exc:
            self.hub.metrics.bad_input.labels("mqtt", exc.code).inc()
            self.hub.publish_event(session_id, exc)
            return
        self._last_seen[session_id] = self.hub.clock()
        self.hub.publish_event(session_id, link.core.ready_message())
        self.hub.spawn(self._drain(link), f"mqtt-session:{session_id}")
        log.info("mqtt_session_opened", session_id=session_id, voice=link.core.voice)

    async def _drain(self, link: SessionLink) -> None:
        """Nobody reads the session's own queue (its copies go to MQTT): empty it, and close the
        session when its publisher has been silent for the idle time."""
        idle_s = self.hub.config.mqtt_session_idle_s
        try:
            while not link.closed:
                left = self._last_seen.get(link.session_id, 0.0) + idle_s - self.hub.clock()
                if left <= 0:
                    self.hub.close_session(link, CloseReason.MQTT_IDLE)
                    break
                try:
                    async with asyncio.timeout(left):
                        if await link.out.get() is None:
                            break
                except TimeoutError:
                    continue
        finally:
            self._last_seen.pop(link.session_id, None)

    # ---- claims -------------------------------------------------------------------------------

    def claim(self, session_id: str) -> None:
        self._carry_out(self.claims.claim(session_id, time.time(), self.hub.clock()))
        self.hub.deadline_moved()

    def release(self, session_id: str) -> None:
        self._carry_out(self.claims.release(session_id))

    def _carry_out(self, actions: list[ClaimAction]) -> None:
        for action in actions:
            match action:
                case PublishClaim(session_id=sid, claim=claim):
                    topic = topics.session_topic(sid, "claim")
                    lease = int(claim.lease_s)
                    self.hub.out.send(Publish(topic, claim.to_bytes(), 1, expiry_s=lease, retain=True))
                case ClearClaim(session_id=sid):
                    self.hub.out.send(Publish(topics.session_topic(sid, "claim"), b"", 1, retain=True))
                case DropSession(session_id=sid):
                    if (link := self.hub.sessions.get(sid)) is not None:
                        log.warning("session_claim_lost", session_id=sid)
                        self.hub.close_session(link, CloseReason.CLAIM_LOST)
                case CountUnknown(session_id=sid):
                    self.hub.metrics.bad_input.labels("mqtt", "unknown_session").inc()
                    log.warning("bad_mqtt_payload", session_id=sid, code="unknown_session")

    def handle_timer(self, now: float) -> None:
        """The claim book's deadline passed (the hub's deadline task calls this)."""
        self._carry_out(self.claims.handle_timer(now))
