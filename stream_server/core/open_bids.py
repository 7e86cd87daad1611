"""Claim-only opening of MQTT-only sessions, for a broker without shared subscriptions. Pure.

With ``$share`` the broker hands each ``open`` to one gateway. A broker that refuses shared
subscriptions (aedes, SUBACK 0x9E) hands it to every gateway, so each one *bids*: it publishes its
claim at once (``ClaimBook.claim``) and holds the open, and what the publisher sends meanwhile,
for ``window_s``. The claim race (``claims.py``: the smallest ``(claimed_at, gateway_id)`` wins
everywhere) settles in that time; when the window closes, the gateway whose claim still stands
opens the session and replays what it held, and the others drop their bid without a word. So
exactly one gateway answers ``ready``, at the cost of ``window_s`` more before it.

A bid holds at most ``max_held`` messages; past that the oldest are dropped and counted in
``dropped`` (a publisher that floods before ``ready`` loses its first words, and says so in the
gateway's log).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Bid:
    session_id: str
    open_payload: bytes
    until: float
    held: list[tuple[str, bytes]] = field(default_factory=list)  # (kind, payload) in arrival order
    dropped: int = 0


class OpenBids:
    def __init__(self, window_s: float = 0.5, max_held: int = 256) -> None:
        self.window_s = window_s
        self.max_held = max_held
        self._bids: dict[str, Bid] = {}

    def bid(self, session_id: str, open_payload: bytes, now: float) -> bool:
        """An ``open`` seen: True when this starts a bid (False: one is already running)."""
        if session_id in self._bids:
            return False
        self._bids[session_id] = Bid(session_id, open_payload, now + self.window_s)
        return True

    def pending(self, session_id: str) -> bool:
        return session_id in self._bids

    def hold(self, session_id: str, kind: str, payload: bytes) -> bool:
        """Keep input for a session being bid for (False: no bid, the caller handles it)."""
        bid = self._bids.get(session_id)
        if bid is None:
            return False
        bid.held.append((kind, payload))
        if len(bid.held) > self.max_held:
            del bid.held[0]
            bid.dropped += 1
        return True

    def next_deadline(self) -> float | None:
        return min((bid.until for bid in self._bids.values()), default=None)

    def handle_timer(self, now: float) -> list[Bid]:
        """The bids whose window has closed: the caller opens those whose claim still stands."""
        due = [bid for bid in self._bids.values() if bid.until <= now]
        for bid in due:
            del self._bids[bid.session_id]
        return due
