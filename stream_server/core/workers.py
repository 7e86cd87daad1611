"""The worker registry: who is alive and ready, from heartbeats and retained status. Pure.

A worker is dead when its last will says offline, or it is silent for ``missed_heartbeats``
intervals (measured against the interval the worker itself reports). Every message from a worker is
a sign of life (``seen``: its acks, audio frames, done and errors, not only heartbeats), and silence
is judged only up to ``read_through``: the time up to which the gateway has read what arrived. A
worker whose silence ran out while messages were still unread is *unconfirmed*: it is judged again
by ``caught_up(now)`` once the reader has caught up (a busy gateway reading late never declares a
busy worker dead), and no deadline is asked for it meanwhile. A worker that is draining, loading,
warming or unavailable is alive but gets no new jobs. A worker that failed a job is cooled down
for ``retry_delay_s`` (the plan's SESAME_RETRY_DELAY) before it gets jobs again. A dead worker is
forgotten ``retention_s`` after it was last heard from (workers with generated ids get a new id on
every restart, so a registry that never forgets grows for good).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.messages import Heartbeat, WorkerStatus


@dataclass(slots=True)
class WorkerInfo:
    worker_id: str
    state: str = "loading"
    engine: str = "bark"
    model: str = ""
    reason: str | None = None
    last_seen: float = 0.0
    interval_s: float = 0.5
    queue_depth: int = 0
    jobs_in_flight: int = 0
    rtf: float = 0.0
    pid: int | None = None
    alive: bool = True
    unconfirmed: bool = False  # silent past its window, but messages were still unread then
    cooldown_until: float = 0.0
    assigned: set[str] = field(default_factory=set)  # job ids we sent and not yet finished

    @property
    def up(self) -> bool:
        """Alive and ready; what up/down changes report. A cool-down is not a change of state."""
        return self.alive and self.state == "ready"

    def ready(self, now: float) -> bool:
        """Can take a job now: up and not cooling down after a failure."""
        return self.up and now >= self.cooldown_until


@dataclass(frozen=True, slots=True)
class WorkerChange:
    """A worker came up (ready) or went down (dead), with why."""

    worker_id: str
    up: bool
    reason: str


class WorkerRegistry:
    def __init__(
        self, missed_heartbeats: int = 3, retry_delay_s: float = 1.0, retention_s: float = 300.0
    ) -> None:
        self.missed_heartbeats = missed_heartbeats
        self.retry_delay_s = retry_delay_s
        self.retention_s = retention_s
        self.workers: dict[str, WorkerInfo] = {}

    def heartbeat(self, hb: Heartbeat, now: float) -> list[WorkerChange]:
        w = self.workers.get(hb.worker_id)
        changes: list[WorkerChange] = []
        if w is None:
            w = self.workers[hb.worker_id] = WorkerInfo(hb.worker_id)
        was_up = w.up
        w.alive, w.unconfirmed = True, False
        w.state, w.engine, w.model, w.reason = hb.state, hb.engine, hb.model, hb.reason
        w.last_seen, w.interval_s = max(w.last_seen, now), hb.interval_s
        w.queue_depth, w.jobs_in_flight, w.rtf, w.pid = hb.queue_depth, hb.jobs_in_flight, hb.rtf, hb.pid
        if w.up and not was_up:
            changes.append(WorkerChange(w.worker_id, True, "ready"))
        elif was_up and not w.up:
            changes.append(WorkerChange(w.worker_id, False, hb.state))
        return changes

    def status(self, st: WorkerStatus, now: float) -> list[WorkerChange]:
        w = self.workers.get(st.worker_id)
        if st.state == "offline":
            if w is None or not w.alive:
                return []
            return [self._kill(w, "last_will")]
        if w is None:
            self.workers[st.worker_id] = WorkerInfo(st.worker_id, last_seen=now, pid=st.pid)
        return []

    def seen(self, worker_id: str | None, now: float) -> None:
        """A message other than a heartbeat came from this worker (None: from no worker): it is
        alive now."""
        w = None if worker_id is None else self.workers.get(worker_id)
        if w is not None and w.alive:
            w.last_seen, w.unconfirmed = max(w.last_seen, now), False

    def _expires_at(self, w: WorkerInfo) -> float:
        if w.alive:
            return w.last_seen + self.missed_heartbeats * w.interval_s
        return w.last_seen + self.retention_s

    def next_deadline(self) -> float | None:
        """When a live worker's heartbeats run out, or a dead one is to be forgotten (an unconfirmed
        worker waits for ``caught_up`` instead)."""
        return min((self._expires_at(w) for w in self.workers.values() if not w.unconfirmed), default=None)

    def handle_timer(self, now: float, read_through: float | None = None) -> list[WorkerChange]:
        """Act on what is due. ``read_through``: everything that arrived before it has been read
        (None: everything that arrived has been); silence is judged only up to there."""
        judged = now if read_through is None else min(now, read_through)
        changes: list[WorkerChange] = []
        for w in list(self.workers.values()):
            if now < self._expires_at(w) or w.unconfirmed:
                continue
            if w.alive and judged < self._expires_at(w):
                w.unconfirmed = True  # its heartbeat may be among what is still unread
            elif w.alive:
                changes.append(self._kill(w, "missed_heartbeats"))
            elif not w.assigned:
                del self.workers[w.worker_id]
            else:
                w.last_seen = now  # still holds jobs being failed over: forget it later
        return changes

    def unconfirmed(self) -> bool:
        return any(w.unconfirmed for w in self.workers.values())

    def deaf(self, lost_at: float, now: float) -> None:
        """The gateway's own link was down from ``lost_at`` until ``now``: it heard no one, so that
        time is nobody's silence. Each live worker's window goes on from where it stood."""
        gap = max(0.0, now - lost_at)
        for w in self.workers.values():
            if w.alive:
                w.last_seen, w.unconfirmed = min(now, w.last_seen + gap), False

    def caught_up(self, now: float) -> list[WorkerChange]:
        """Everything that arrived until ``now`` has been read: judge the unconfirmed workers."""
        changes: list[WorkerChange] = []
        for w in list(self.workers.values()):
            if w.unconfirmed:
                w.unconfirmed = False
                if w.alive and now >= self._expires_at(w):
                    changes.append(self._kill(w, "missed_heartbeats"))
        return changes

    def _kill(self, w: WorkerInfo, reason: str) -> WorkerChange:
        w.alive, w.unconfirmed = False, False
        w.state = "offline"
        return WorkerChange(w.worker_id, False, reason)

    def cool_down(self, worker_id: str, now: float) -> None:
        w = self.workers.get(worker_id)
        if w is not None:
            w.cooldown_until = now + self.retry_delay_s

    def pick(self, now: float, exclude: set[str] | frozenset[str] = frozenset()) -> WorkerInfo | None:
        """The ready worker with the least work: its reported queue plus what we sent since."""
        best: WorkerInfo | None = None
        best_key: tuple[float, float, str] | None = None
        for w in self.workers.values():
            if w.worker_id in exclude or not w.ready(now):
                continue
            key = (float(max(len(w.assigned), w.queue_depth + w.jobs_in_flight)), w.rtf, w.worker_id)
            if best_key is None or key < best_key:
                best, best_key = w, key
        return best

    def ready_count(self, now: float) -> int:
        return sum(1 for w in self.workers.values() if w.ready(now))

    def alive_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.alive)
