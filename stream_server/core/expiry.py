"""Keys that expire at a time unless renewed or dropped first: a pure core with a timer.

The resume grace of a detached websocket session (hub/detached.py) and the idle timeout of an
MQTT-only session (mqtt/topic_sessions.py) are each one of these, woken by the hub's one deadline
task (``next_deadline()``/``handle_timer(now)``) instead of a task sleeping per session.
"""

from __future__ import annotations


class ExpiryBook:
    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: str) -> bool:
        return key in self._at

    def expire_at(self, key: str, at: float) -> None:
        """``key`` expires at ``at`` (a later or earlier time replaces the one it had)."""
        self._at[key] = at

    def drop(self, key: str) -> None:
        self._at.pop(key, None)

    def next_deadline(self) -> float | None:
        return min(self._at.values(), default=None)

    def handle_timer(self, now: float) -> list[str]:
        """The keys whose time has come, in the order they were set; they are forgotten."""
        expired = [key for key, at in self._at.items() if at <= now]
        for key in expired:
            del self._at[key]
        return expired
