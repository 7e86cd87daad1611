"""Concurrency caps of the in-process tiers that use this machine's CPU (piper, espeak-ng). Pure.

A tier with a cap runs at most that many sentences at once; the rest wait, and start in the one
order jobs start everywhere (broker/deadline_order.py: earliest playback need, then round robin
across sessions). A sentence that could not start by its queue deadline (``queue_timeout_s`` after
it came, or when its listener needs it if that is later) is handed back as ``TierBusy``: the
scheduler moves it to the next tier without counting a failure against this one (busy is not
broken: its circuit breaker stays closed). A sentence whose session still has an earlier sentence
running or waiting on the tier is not handed back: its listener hears them in order, so its need
moves with theirs (and the turn stays in one voice). A tier without a cap (the cloud tiers, which
wait on the network) starts everything at once. So a burst of fallbacks never takes the cores the
primary voice needs, and never waits unbounded behind them either. The one exception is the last
resort (the last audio tier of the order, espeak-ng by default): after it comes only text, and a
late voice beats a sentence sent as text, so a sentence there waits for its slot however long.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from broker.deadline_order import Waiting, next_up
from stream_server.core.actions import Sentence


@dataclass(frozen=True, slots=True)
class TierStart:
    job_id: str
    tier: str
    sentence: Sentence


@dataclass(frozen=True, slots=True)
class TierBusy:
    job_id: str
    tier: str


@dataclass(slots=True)
class _Queued:
    job_id: str
    sentence: Sentence
    due: float  # its queue deadline
    arrived: int


class TierQueue:
    def __init__(
        self, caps: Mapping[str, int], queue_timeout_s: float, last_resort: str | None = None
    ) -> None:
        self.caps = {tier: max(1, cap) for tier, cap in caps.items()}
        self.queue_timeout_s = queue_timeout_s
        self.last_resort = last_resort  # never handed back busy: only text comes after it
        self._running: dict[str, tuple[str, str]] = {}  # job id -> (tier, session)
        self._waiting: dict[str, list[_Queued]] = {tier: [] for tier in self.caps}
        self._served: dict[str, int] = {}  # session -> when it last started a job (a counter)
        self._count = 0

    def offer(self, job_id: str, tier: str, sentence: Sentence, now: float) -> list[TierStart]:
        """A sentence for ``tier``: started at once if the tier has room, else queued."""
        if tier not in self.caps:
            return [TierStart(job_id, tier, sentence)]
        self._count += 1
        due = math.inf if tier == self.last_resort else max(now + self.queue_timeout_s, sentence.need_at)
        self._waiting[tier].append(_Queued(job_id, sentence, due, self._count))
        return self._fill(tier, now)

    def finished(self, job_id: str, now: float) -> list[TierStart]:
        """A job ended (done, failed or cancelled): its slot goes to the next one waiting."""
        running = self._running.pop(job_id, None)
        if running is not None:
            return self._fill(running[0], now)
        for waiting in self._waiting.values():
            waiting[:] = [q for q in waiting if q.job_id != job_id]
        return []

    def clear(self) -> None:
        """Shutting down: nothing waiting starts any more."""
        for waiting in self._waiting.values():
            waiting.clear()

    def waiting(self, tier: str) -> int:
        return len(self._waiting.get(tier, ()))

    def running(self, tier: str) -> int:
        return sum(1 for t, _ in self._running.values() if t == tier)

    def _behind_its_session(self, tier: str, q: _Queued) -> bool:
        session = q.sentence.session_id
        return any(t == tier and s == session for t, s in self._running.values()) or any(
            o.sentence.session_id == session and o.arrived < q.arrived for o in self._waiting[tier]
        )

    def next_deadline(self) -> float | None:
        due = min(
            (
                q.due
                for tier, waiting in self._waiting.items()
                for q in waiting
                if not self._behind_its_session(tier, q)
            ),
            default=math.inf,
        )
        return None if due == math.inf else due

    def handle_timer(self, now: float) -> list[TierBusy]:
        busy: list[TierBusy] = []
        for tier, waiting in self._waiting.items():
            late = [q for q in waiting if now >= q.due and not self._behind_its_session(tier, q)]
            waiting[:] = [q for q in waiting if q not in late]
            busy += [TierBusy(q.job_id, tier) for q in late]
        return busy

    def _fill(self, tier: str, now: float) -> list[TierStart]:
        starts: list[TierStart] = []
        waiting = self._waiting[tier]
        while waiting and self.running(tier) < self.caps[tier]:
            views = [
                Waiting(q.sentence.session_id, q.sentence.need_at, len(q.sentence.text), q.arrived)
                for q in waiting
            ]
            pick = next_up(views, now, self._served)
            assert pick is not None
            q = waiting.pop(pick)
            self._count += 1
            self._served[q.sentence.session_id] = self._count
            self._running[q.job_id] = (tier, q.sentence.session_id)
            starts.append(TierStart(q.job_id, tier, q.sentence))
        if len(self._served) > 4 * (len(self._running) + sum(map(len, self._waiting.values()))) + 64:
            waiting_now = {q.sentence.session_id for w in self._waiting.values() for q in w}
            self._served = {s: n for s, n in self._served.items() if s in waiting_now}
        return starts
