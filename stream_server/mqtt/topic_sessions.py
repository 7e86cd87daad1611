"""Sessions over MQTT alone, and the claims that keep several gateways on one broker quiet.

A device or service with no websocket publishes on ``sesame/v1/sessions/{id}/...`` (docs/asyncapi.yaml):

- ``open``: ``{"type":"open","voice":…,"format":…,"sample_rate":…}`` (every field optional; an empty
  payload is ``{"type":"open"}``). It reaches one gateway (shared subscription); that gateway opens
  the session with the publisher's id, claims it (``claims.py``) and publishes ``ready`` on
  ``…/events``. On a broker that refuses the shared subscription (its SUBACK is read on every
  connection) the gateway subscribes to ``open`` plainly and opens by claim alone
  (``open_bids.py``: every gateway bids, the claim race picks one), logged once.
- ``text`` (as for any session), ``flush``, ``cancel``, ``close``: payload empty or
  ``{"type":"flush"}`` etc.
- The session's events (JSON) and audio frames (binary) go to ``…/events`` and ``…/audio``, as for
  every session; bad input for the session is answered with an ``error`` there.

An MQTT-only session closes on ``close`` or after ``SESAME_MQTT_SESSION_IDLE`` without a message
from its publisher. This module is the adapter; the decisions about claims are ``ClaimBook``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from broker import logs, topics
from broker.errors import BrokerError, ProtocolError
from broker.link import MqttLink
from broker.wire import Message, Registry
from broker.ws_protocol import AudioFormat, CancelTurn, Flush, SessionText, Start, Text, session_text_messages
from stream_server.core.claims import (
    Claim,
    ClaimAction,
    ClaimBook,
    ClearClaim,
    CountUnknown,
    DropSession,
    ImpossibleClaim,
    PublishClaim,
    claim_messages,
)
from stream_server.core.expiry import ExpiryBook
from stream_server.core.open_bids import Bid, OpenBids
from stream_server.hub.live_sessions import CloseReason, SessionLink
from stream_server.hub.ports import SessionHost, TaskHost
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.outbound import MqttOut, Publish

log = logs.get("sesame.mqtt_sessions")

CLAIM_WINDOW_S = 2.0
OPEN_BID_WINDOW_S = 0.5  # claim-only opening: how long a bid waits for the claim race to settle
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
        self.bids = OpenBids(OPEN_BID_WINDOW_S)
        self.claim_only = False  # the broker refused the shared subscription for open
        self.idle = ExpiryBook()  # MQTT-only session -> when it closes unless its publisher speaks

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
            self._carry_out(self.claims.seen(session_id, claim, self.hub.clock(), time.time()))
            self.hub.deadline_moved()
            return
        link = self.hub.sessions.get(session_id)
        if link is None:
            if kind == "open":
                self._open(session_id, payload)
            elif not self.bids.hold(session_id, kind, payload):
                self.unknown(session_id)
            return
        self._heard_from(session_id)
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

    def text(self, session_id: str, payload: bytes) -> None:
        """Text published on a session's text topic (any session: websocket ones have it too)."""
        link = self.hub.sessions.get(session_id)
        if link is None:
            if not self.bids.hold(session_id, "text", payload):
                self.unknown(session_id)  # quiet when another gateway holds it
            return
        self._heard_from(session_id)
        try:
            msg = session_text_messages.decode(payload)
            assert isinstance(msg, SessionText)
            self.hub.receive(link, Text(msg.text))
            if msg.flush:
                self.hub.receive(link, Flush())
        except ProtocolError as exc:
            self.hub.refuse(link, exc, path="mqtt")

    async def connected(self, link: MqttLink) -> None:
        """A connection to a broker node: our claims again on the node we landed on (a node
        that lost its retained messages still knows them), and claim-only opening if this node
        refused the shared subscription."""
        for sid, claim in list(self.claims.owners.items()):
            if claim.gateway_id == self.hub.config.gateway_id:
                self._carry_out([PublishClaim(sid, claim)])
        code = link.refused.get(topics.SHARED_SESSION_OPEN)
        if code is None or self.claim_only:
            return
        try:
            await link.subscribe(topics.ALL_SESSION_OPEN, 1, instead_of=topics.SHARED_SESSION_OPEN)
        except BrokerError as exc:  # the link drops and comes back: this runs again then
            log.warning("claim_only_subscribe_failed", error=str(exc))
            return
        self.claim_only = True
        log.warning(
            "mqtt_shared_subscription_refused",
            reason_code=hex(code),
            broker=str(link.node),
            opening="claim_only",
            bid_window_s=self.bids.window_s,
        )

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
        if self.claim_only:
            if self.bids.bid(session_id, payload, self.hub.clock()):
                self.claim(session_id)
                self.hub.deadline_moved()
            return
        self._open_now(session_id, payload)

    def _bid_closed(self, bid: Bid) -> None:
        claim = self.claims.owners.get(bid.session_id)
        if claim is None or claim.gateway_id != self.hub.config.gateway_id:
            log.info("mqtt_session_bid_lost", session_id=bid.session_id)
            return
        if bid.dropped:
            log.warning("mqtt_session_bid_overflow", session_id=bid.session_id, dropped=bid.dropped)
        self._open_now(bid.session_id, bid.open_payload)
        for kind, payload in bid.held:
            if kind == "text":
                self.text(bid.session_id, payload)
            else:
                self.handle(kind, bid.session_id, payload)

    def _open_now(self, session_id: str, payload: bytes) -> None:
        try:
            topics.check_id(session_id, "session_id")
            msg = decode_control("open", payload)
            assert isinstance(msg, Open)
            link = self.hub.open_session(msg.voice, msg.sample_rate, msg.format, session_id=session_id)
        except ProtocolError as exc:
            self.hub.metrics.bad_input.labels("mqtt", exc.code).inc()
            self.hub.publish_event(session_id, exc)
            return
        self.idle.expire_at(session_id, self.hub.clock() + self.hub.config.mqtt_session_idle_s)
        self.hub.deadline_moved()
        self.hub.publish_event(session_id, link.core.ready_message())
        self.hub.spawn(self._discard_output(link), f"mqtt-session:{session_id}")
        log.info("mqtt_session_opened", session_id=session_id, voice=link.core.voice)

    def _heard_from(self, session_id: str) -> None:
        if session_id in self.idle:  # a later deadline: the deadline task finds it when it wakes
            self.idle.expire_at(session_id, self.hub.clock() + self.hub.config.mqtt_session_idle_s)

    async def _discard_output(self, link: SessionLink) -> None:
        """Nobody reads the session's own queue (its copies go to MQTT): empty it until the session
        ends. Its idle timeout is ``idle``'s deadline, on the hub's deadline task."""
        try:
            while not link.closed and await link.out.get() is not None:
                pass
        finally:
            self.idle.drop(link.session_id)

    # ---- claims -------------------------------------------------------------------------------

    def claim(self, session_id: str) -> None:
        held = self.claims.owners.get(session_id)
        if held is not None and held.gateway_id == self.hub.config.gateway_id:
            return  # ours already (a bid that won): a later claim would rank behind it
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
                case ImpossibleClaim(session_id=sid, gateway_id=gw, reason=reason):
                    self.hub.metrics.bad_input.labels("mqtt", "impossible_claim").inc()
                    log.warning("claim_ignored", session_id=sid, gateway_id=gw, reason=reason)
                case CountUnknown(session_id=sid):
                    self.hub.metrics.bad_input.labels("mqtt", "unknown_session").inc()
                    log.warning("bad_mqtt_payload", session_id=sid, code="unknown_session")

    def next_deadline(self) -> float | None:
        deadlines = (self.claims.next_deadline(), self.bids.next_deadline(), self.idle.next_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """The claim book's, a bid's or an idle session's deadline passed (the hub's deadline task
        calls this)."""
        self._carry_out(self.claims.handle_timer(now))
        for bid in self.bids.handle_timer(now):
            self._bid_closed(bid)
        for session_id in self.idle.handle_timer(now):
            link = self.hub.sessions.get(session_id)
            if link is not None and not link.closed:
                self.hub.close_session(link, CloseReason.MQTT_IDLE)
