"""Which waiting job starts next: earliest playback deadline first, fair across sessions. Pure.

The one rule both sides of a job follow (a worker's queue, synth_worker/core.py; the gateway's
in-process tiers, stream_server/core/tier_queue.py), so ``Job.need_in_s`` means the same
everywhere:

1. only the head of each session's waiting jobs may start (a session's sentences keep their order);
2. the earliest need first, where a need already past counts as *now*: every listener already
   waiting is equally late;
3. ties (every head needed now): round robin across sessions, the one served longest ago first (a
   session never served comes first), so one session's lookahead cannot fill a queue ahead of
   another session's first sentence;
4. then the shorter text (a turn's short first clause is heard sooner), then the earlier arrival.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Waiting:
    session_id: str
    need_at: float  # when its listener needs its first audio (the deciding side's clock)
    chars: int  # length of its text
    arrived: int  # arrival order, increasing


def next_up(waiting: Sequence[Waiting], now: float, served: Mapping[str, int]) -> int | None:
    """Index into ``waiting`` of the job to start now (None if none waits). ``served``: for each
    session, a counter value of when it was last served (higher: more recent; absent: never)."""
    heads: dict[str, int] = {}
    for i, w in enumerate(waiting):
        head = heads.get(w.session_id)
        if head is None or w.arrived < waiting[head].arrived:
            heads[w.session_id] = i
    if not heads:
        return None

    def key(i: int) -> tuple[float, int, int, int]:
        w = waiting[i]
        return (max(w.need_at, now), served.get(w.session_id, -1), w.chars, w.arrived)

    return min(heads.values(), key=key)


def start_order(waiting: Sequence[Waiting], now: float, served: Mapping[str, int]) -> list[int]:
    """Every waiting job in the order they would start if each were served in turn from ``now``."""
    rest = list(range(len(waiting)))
    seen = dict(served)
    tick = max(seen.values(), default=0)
    order: list[int] = []
    while rest:
        pick = next_up([waiting[i] for i in rest], now, seen)
        assert pick is not None
        index = rest.pop(pick)
        tick += 1
        seen[waiting[index].session_id] = tick
        order.append(index)
    return order
