"""Flood control for a session's client frames: a token bucket. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Flood control for client frames: ``rate`` per second, ``burst`` at once."""

    rate: float = 400.0
    burst: float = 2000.0


DEFAULT_FLOOD = TokenBucket()


class FloodGate:
    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._tokens = bucket.burst
        self._last_refill: float | None = None

    def admit(self, now: float) -> None:
        """One frame at ``now``; ``rate_limited`` when the bucket is empty."""
        if self._last_refill is not None:
            self._tokens = min(self.bucket.burst, self._tokens + (now - self._last_refill) * self.bucket.rate)
        self._last_refill = now
        if self._tokens < 1:
            raise ProtocolError("too many frames: slow down", code="rate_limited")
        self._tokens -= 1
