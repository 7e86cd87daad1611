"""Which gateway holds which session, when several share one broker. Pure.

A session opened over MQTT alone (``sesame/v1/sessions/{id}/open``) reaches exactly one gateway:
the gateways subscribe to ``open`` through one MQTT v5 shared subscription
(``$share/sesame-gateways/...``), so the broker hands each open to one of them. That gateway then
publishes a retained ``claim`` on ``sesame/v1/sessions/{id}/claim``; every gateway reads the claims
and so knows the sessions that another gateway holds: text, flush and cancel for those are not its
business, and it stays quiet (no ``unknown_session`` error). Websocket sessions are claimed too, so
their ``text`` side door is quiet on the other gateways as well.

A claim survives a race: should two gateways claim one session (a publisher that sent ``open``
twice), every gateway keeps the smaller ``(claimed_at, gateway_id)``; the loser drops its copy
without a word and the winner publishes its claim again, so the retained one is the winner's.
Text for a session nobody has claimed waits ``window_s`` for a claim (the claim and the text travel
separately) before it counts as ``unknown_session``. A closed session's claim is cleared (an empty
retained message).

A claim is a lease: it holds for ``lease_s`` after it was seen, the holder publishes it again every
``lease_s / 2``, and the retained copy carries an MQTT message expiry of ``lease_s``. So the claims
of a gateway that crashed lapse by themselves, and its sessions' ids can be opened again elsewhere.

Only the gateway role may write claims (broker/mosquitto.acl). Even so, a claim with an impossible
``claimed_at`` is ignored (``ImpossibleClaim``): one not a positive finite number, one from the
future (beyond ``skew_s`` of clock difference between gateways), and one that would take a session
we hold with a time earlier than our own claim by more than ``skew_s``: a real rival claims within
moments of us (the same ``open`` twice), never long before a session we made or were handed first.
A ``claimed_at: 0`` therefore closes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from broker.errors import ProtocolError
from broker.topics import check_id
from broker.wire import Message, Registry
from stream_server.core.expiry import ExpiryBook

claim_messages = Registry("claim")


@claim_messages.register
@dataclass(frozen=True, slots=True)
class Claim(Message):
    type = "claim"
    gateway_id: str
    claimed_at: float  # wall-clock seconds; only a tie-break that every gateway computes alike
    lease_s: float = 60.0

    def validate(self) -> None:
        check_id(self.gateway_id, "gateway_id")
        if not (math.isfinite(self.claimed_at) and self.claimed_at > 0):
            raise ProtocolError("claimed_at must be a positive time", code="impossible_claim")
        if not (math.isfinite(self.lease_s) and 0 < self.lease_s <= 3600):
            raise ProtocolError("lease_s must be in (0, 3600]", code="bad_field")

    @property
    def rank(self) -> tuple[float, str]:
        return (self.claimed_at, self.gateway_id)


@dataclass(frozen=True, slots=True)
class PublishClaim:
    session_id: str
    claim: Claim


@dataclass(frozen=True, slots=True)
class ClearClaim:
    session_id: str


@dataclass(frozen=True, slots=True)
class DropSession:
    """We lost a claim race: close our copy of the session quietly."""

    session_id: str


@dataclass(frozen=True, slots=True)
class CountUnknown:
    """Text for this session came and no gateway claimed it within the window."""

    session_id: str


@dataclass(frozen=True, slots=True)
class ImpossibleClaim:
    """A claim whose time cannot be true was ignored."""

    session_id: str
    gateway_id: str
    reason: str


ClaimAction = PublishClaim | ClearClaim | DropSession | CountUnknown | ImpossibleClaim


class ClaimBook:
    def __init__(
        self, gateway_id: str, window_s: float = 2.0, lease_s: float = 60.0, skew_s: float = 10.0
    ) -> None:
        self.gateway_id = gateway_id
        self.window_s = window_s
        self.lease_s = lease_s
        self.skew_s = skew_s
        self.owners: dict[str, Claim] = {}
        self._renewals = ExpiryBook()  # our session -> when we publish its claim again
        self._lapses: dict[str, float] = {}  # another's session -> when its claim lapses unless seen again
        self._orphans = ExpiryBook()  # session -> when its unclaimed text counts as unknown

    def _mine(self, session_id: str) -> bool:
        claim = self.owners.get(session_id)
        return claim is not None and claim.gateway_id == self.gateway_id

    def claim(self, session_id: str, wall_now: float, now: float) -> list[ClaimAction]:
        """We hold this session now."""
        mine = Claim(self.gateway_id, wall_now, self.lease_s)
        self.owners[session_id] = mine
        self._lapses.pop(session_id, None)
        self._renewals.expire_at(session_id, now + self.lease_s / 2)
        self._orphans.drop(session_id)
        return [PublishClaim(session_id, mine)]

    def release(self, session_id: str) -> list[ClaimAction]:
        """Our session closed."""
        if not self._mine(session_id):
            return []
        del self.owners[session_id]
        self._renewals.drop(session_id)
        return [ClearClaim(session_id)]

    def seen(self, session_id: str, claim: Claim | None, now: float, wall_now: float) -> list[ClaimAction]:
        """A claim (or its clearing, None) arrived on the broker, ours included. ``wall_now``: the
        wall clock, to judge the claim's own time by."""
        current = self.owners.get(session_id)
        if claim is not None and claim.gateway_id != self.gateway_id:
            if claim.claimed_at > wall_now + self.skew_s:
                return [ImpossibleClaim(session_id, claim.gateway_id, "future")]
            if (
                self._mine(session_id)
                and current is not None
                and claim.claimed_at < current.claimed_at - self.skew_s
            ):
                return [ImpossibleClaim(session_id, claim.gateway_id, "before_ours")]
        self._orphans.drop(session_id)
        if claim is None:
            if current is not None and not self._mine(session_id):
                del self.owners[session_id]
                self._lapses.pop(session_id, None)
            return []
        if claim.gateway_id != self.gateway_id and (current is None or claim.rank <= current.rank):
            self._lapses[session_id] = now + claim.lease_s  # another's claim, seen (again) now
        if current is None or claim.rank < current.rank:
            lost = self._mine(session_id)
            self.owners[session_id] = claim
            if claim.gateway_id != self.gateway_id:
                self._renewals.drop(session_id)
            return [DropSession(session_id)] if lost and claim.gateway_id != self.gateway_id else []
        if claim.rank > current.rank and self._mine(session_id):
            return [PublishClaim(session_id, current)]  # the retained claim must be the winner's
        return []

    def held_elsewhere(self, session_id: str, now: float) -> bool:
        claim = self.owners.get(session_id)
        if claim is None or claim.gateway_id == self.gateway_id:
            return False
        if now >= self._lapses.get(session_id, 0.0):  # its holder stopped renewing it: lapsed
            del self.owners[session_id]
            self._lapses.pop(session_id, None)
            return False
        return True

    def unclaimed_text(self, session_id: str, now: float) -> None:
        """Text for a session nobody is known to hold: wait for a claim before calling it unknown."""
        self._orphans.setdefault(session_id, now + self.window_s)

    def next_deadline(self) -> float | None:
        """The next unclaimed text to call unknown, or the next of our claims to renew."""
        times = (self._orphans.next_deadline(), self._renewals.next_deadline())
        return min((t for t in times if t is not None), default=None)

    def handle_timer(self, now: float) -> list[ClaimAction]:
        actions: list[ClaimAction] = [CountUnknown(sid) for sid in self._orphans.handle_timer(now)]
        for sid in self._renewals.handle_timer(now):
            if self._mine(sid):
                self._renewals.expire_at(sid, now + self.lease_s / 2)
                actions.append(PublishClaim(sid, self.owners[sid]))
        return actions
