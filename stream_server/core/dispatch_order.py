"""The gateway's dispatch order when several sessions' sentences are ready at once. Pure.

The same rule as a worker's queue and the in-process tiers (broker/deadline_order.py): the earliest
playback need first (a need already past counts as now), ties round robin across sessions (the one
dispatched longest ago first; one never dispatched before any), then the shorter text, then the
order they came in; a session's own sentences keep their order. Used where the gateway has a batch
to send rather than one sentence: sessions whose lookahead lets a sentence go at the same wake
(hub/live_sessions.py: ``DispatchOrder``), and sentences that fail over together when a worker dies
or the broker link moves (core/scheduler.py: ``needed_first``, a sort, as such a batch may hold
every sentence in flight), so a capped tier's free places go to the listeners who need them first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from broker.deadline_order import Waiting, start_order
from stream_server.core.actions import Sentence

T = TypeVar("T")


class DispatchOrder:
    """Remembers when each session was last dispatched to (its round-robin turn)."""

    def __init__(self) -> None:
        self._served: dict[str, int] = {}
        self._tick = 0

    def order(self, ready: Sequence[T], sentence: Callable[[T], Sentence], now: float) -> list[T]:
        """``ready`` in the order to dispatch them; each session is counted as served."""
        picked = in_need_order([sentence(item) for item in ready], now, self._served)
        for i in picked:
            self._tick += 1
            self._served[sentence(ready[i]).session_id] = self._tick
        return [ready[i] for i in picked]

    def forget(self, session_id: str) -> None:
        self._served.pop(session_id, None)


def needed_first(items: Sequence[T], sentence: Callable[[T], Sentence], now: float) -> list[T]:
    """A one-off batch (no round-robin memory) in dispatch order, by a sort: the earliest need
    (past is now), then each session's first before anyone's second, then the shorter text."""
    rank: dict[str, list[tuple[int, int]]] = {}
    for i, item in enumerate(items):
        rank.setdefault(sentence(item).session_id, []).append((sentence(item).seq, i))
    place = {i: n for seqs in rank.values() for n, (_, i) in enumerate(sorted(seqs))}

    def key(i: int) -> tuple[float, int, int]:
        s = sentence(items[i])
        return (max(s.need_at, now), place[i], len(s.text))

    return [items[i] for i in sorted(range(len(items)), key=key)]


def in_need_order(sentences: Sequence[Sentence], now: float, served: dict[str, int]) -> list[int]:
    """Indexes into ``sentences`` in dispatch order (``served``: a session's last turn, higher is
    more recent; absent: never)."""
    waiting = [Waiting(s.session_id, s.need_at, len(s.text), s.seq) for s in sentences]
    return start_order(waiting, now, served)
