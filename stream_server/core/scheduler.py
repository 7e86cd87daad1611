"""The failover state machine: where each sentence is spoken, and what happens when that fails. Pure.
Fed events with the current time, it returns actions for the hub to carry out; ``next_deadline()``
says when it next needs ``handle_timer``. Tiers: the worker pool, the in-process engines, then
``GiveUp`` (an error frame carrying the text). An attempt fails over (another ready worker, then down
the tiers whose breaker allows) when its worker dies, no ack comes in time, first audio misses
``failover.first_audio_deadline``, a chunk stalls, or the engine errs. A turn that fell stays down."""

from __future__ import annotations

from collections.abc import Callable

from broker.messages import Heartbeat, WorkerStatus
from stream_server.core.actions import (
    WORKERS,
    Action,
    CancelJob,
    Cause,
    Completed,
    FailedOver,
    GiveUp,
    ProbeTier,
    RunLocal,
    SendJob,
    Sentence,
    TierChanged,
    WorkerChanged,
)
from stream_server.core.breaker import CircuitBreaker, Transition
from stream_server.core.dispatch_order import needed_first
from stream_server.core.failover import (
    Attempt,
    FailoverConfig,
    Task,
    ahead_not_begun,
    attempt_due,
    budget_again,
    first_audio_deadline,
    followers,
    lateness,
)
from stream_server.core.job_tokens import job_token
from stream_server.core.tier_switch import carry_over
from stream_server.core.workers import WorkerChange, WorkerRegistry


class Scheduler:
    def __init__(
        self,
        config: FailoverConfig,
        job_prefix: str = "j",
        token: Callable[[], str] = job_token,
    ) -> None:
        self.config = config
        self.job_prefix = job_prefix[:24]
        self._token = token  # 144 random bits: a job id cannot be guessed (docs/security.md)
        self.registry = WorkerRegistry(
            config.missed_heartbeats, config.retry_delay_s, config.worker_retention_s
        )
        self.breakers = {
            t: CircuitBreaker(probe_interval_s=config.probe_interval_s) for t in config.tiers if t != WORKERS
        }
        self.tasks: dict[str, Task] = {}  # job_id of the current attempt -> task
        self.sticky: dict[str, tuple[int, int]] = {}  # session_id -> (turn, lowest tier index)
        self._probing: set[str] = set()
        self.tiers: tuple[str, ...] = config.tiers  # the operator's switch (core/tier_switch.py)
        self.disabled: frozenset[str] = frozenset()

    def set_tiers(self, order: tuple[str, ...], disabled: frozenset[str]) -> None:
        """The switch changed (``order``: SESAME_TIERS rearranged); what is in flight keeps its tier."""
        old, self.tiers, self.disabled = self.tiers, order, disabled
        self.sticky = carry_over(old, order, self.tasks.values(), self.sticky)

    # ---- queries --------------------------------------------------------------------------

    def available_tiers(self, now: float) -> list[str]:
        workers_up = self.registry.ready_count(now) > 0
        return [
            t
            for t in self.tiers  # the operator's switch: its order, without what it disabled
            if t not in self.disabled and (workers_up if t == WORKERS else self.breakers[t].allow(now))
        ]

    # ---- sentences ------------------------------------------------------------------------

    def submit(self, sentence: Sentence, now: float) -> list[Action]:
        start = 0
        sticky = self.sticky.get(sentence.session_id)
        if sticky is not None and sticky[0] == sentence.turn:
            start = sticky[1]
        task = Task(sentence, tier_index=start)
        return self._place(task, now, None, "")

    def ack(self, job_id: str, now: float, queue_position: int = 0) -> list[Action]:
        """A worker took the job (``queue_position`` jobs ahead of it), or a local tier started it."""
        task = self.tasks.get(job_id)
        if task is None or task.attempt is None or task.attempt.acked_at is not None:
            return []
        att = task.attempt
        att.acked_at = now
        self.registry.seen(att.worker_id, now)
        worker = self.registry.workers.get(att.worker_id or "")
        rtf = worker.rtf if worker is not None else 0.0
        if att.worker_id is None:  # a local tier started it (its slot came): its first audio from now
            att.deadline = now + self.config.timeout_s
        elif rtf > 0:
            att.deadline = first_audio_deadline(self.config, task.sentence, rtf, queue_position, now)
        return []

    def chunk(self, job_id: str, now: float) -> Task | None:
        """Audio for ``job_id`` arrived. Returns its task when the audio is to be used."""
        task = self.tasks.get(job_id)
        if task is None or task.attempt is None:
            return None
        att = task.attempt
        self.registry.seen(att.worker_id, now)
        att.acked_at = now if att.acked_at is None else att.acked_at
        att.first_audio_at = now if att.first_audio_at is None else att.first_audio_at
        att.last_chunk_at = now
        return task

    def done(self, job_id: str, now: float) -> list[Action]:
        task = self.tasks.pop(job_id, None)
        if task is None or task.attempt is None:
            return []
        att = task.attempt
        self.registry.seen(att.worker_id, now)
        self._release(att)
        self._progressed(att.worker_id, now)
        actions: list[Action] = []
        if att.tier != WORKERS:
            actions += self._breaker_event(att.tier, self.breakers[att.tier].record_success(now))
        first = None if att.first_audio_at is None else att.first_audio_at - att.sent_at
        actions.append(Completed(task.sentence, job_id, att.engine, att.tier, first))
        return actions

    def failed(self, job_id: str, reason: str, now: float, cause: Cause = Cause.ENGINE) -> list[Action]:
        task = self.tasks.get(job_id)
        if task is None:
            return []
        if cause is Cause.ENGINE and task.attempt is not None:
            self.registry.seen(task.attempt.worker_id, now)  # the worker said so itself
        return self._fail(task, reason, now, cause)

    def broker_moved(self, now: float, lost_at: float) -> list[Action]:
        """The link dropped at ``lost_at`` and came back: what workers published to us in between is
        lost, so each worker job in flight is sent again (the broker's fault), and no worker's
        silence counts while we could not hear."""
        self.registry.deaf(lost_at, now)
        actions: list[Action] = []
        for job_id, task in needed_first(list(self.tasks.items()), lambda kv: kv[1].sentence, now):
            if task.attempt is not None and task.attempt.tier == WORKERS and task.attempt.job_id == job_id:
                actions += self._fail(task, "broker_moved", now, Cause.BROKER)
        return actions

    def busy(self) -> bool:  # anything being synthesized? (phrase preloading waits until not)
        return bool(self.tasks)

    def cancel_session(self, session_id: str) -> list[Action]:
        """Barge-in or disconnect: stop everything of the session, queued and running."""
        self.sticky.pop(session_id, None)
        return self.cancel_sentences(session_id)

    def cancel_sentences(self, session_id: str, seqs: frozenset[int] | None = None) -> list[Action]:
        """Stop these sentences of the session (all when None), queued or running; they may be
        submitted again (a detached session's lookahead: core/admission.py)."""
        actions: list[Action] = []
        for job_id, task in list(self.tasks.items()):
            s = task.sentence
            if s.session_id == session_id and (seqs is None or s.seq in seqs) and task.attempt is not None:
                del self.tasks[job_id]
                self._release(task.attempt)
                actions.append(CancelJob(job_id, task.attempt.tier, task.attempt.worker_id, session_id))
        return actions

    def end_turn(self, session_id: str, turn: int) -> None:
        """At a turn boundary a session that fell back returns to the primary tier."""
        sticky = self.sticky.get(session_id)
        if sticky is not None and sticky[0] <= turn:
            del self.sticky[session_id]

    # ---- workers and time ------------------------------------------------------------------

    def heartbeat(self, hb: Heartbeat, now: float) -> list[Action]:
        return self._worker_changes(self.registry.heartbeat(hb, now), now)

    def status(self, st: WorkerStatus, now: float) -> list[Action]:
        return self._worker_changes(self.registry.status(st, now), now)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next run (None: nothing is waiting on time)."""
        times = [
            due
            for task in self.tasks.values()
            if (att := task.attempt) is not None and not att.unconfirmed
            if (due := attempt_due(self.config, att)) is not None
        ]
        times += [d for d in (self.registry.next_deadline(),) if d is not None]
        for tier, breaker in self.breakers.items():
            if tier not in self._probing and (due := breaker.next_deadline()) is not None:
                times.append(due)
        return min(times, default=None)

    def unconfirmed(self) -> bool:  # anything waiting for the reader to catch up to be judged?
        late = any(t.attempt is not None and t.attempt.unconfirmed for t in self.tasks.values())
        return late or self.registry.unconfirmed()

    def caught_up(self, now: float) -> list[Action]:
        """The gateway has read everything that arrived until ``now`` (silence can be judged)."""
        return self._worker_changes(self.registry.caught_up(now), now) + self._late(now, now, True)

    def handle_timer(self, now: float, read_through: float | None = None) -> list[Action]:
        """Act on every deadline that has passed by ``now``; a worker's silence or late reply only
        up to ``read_through`` (what arrived before it has been read; None: everything has)."""
        actions = self._worker_changes(self.registry.handle_timer(now, read_through), now)
        actions += self._late(now, now if read_through is None else min(now, read_through), False)
        for tier, breaker in self.breakers.items():
            if tier not in self._probing and breaker.probe_due(now):
                self._probing.add(tier)
                actions.append(ProbeTier(tier))
        return actions

    def _late(self, now: float, judged: float, caught_up: bool) -> list[Action]:
        """Attempts past their deadline (one whose reply may be unread waits for ``caught_up``)."""
        actions: list[Action] = []
        for task in list(self.tasks.values()):
            att = task.attempt
            if att is None or self.tasks.get(att.job_id) is not task or att.unconfirmed != caught_up:
                continue
            late = lateness(self.config, att, now, judged)
            att.unconfirmed = late == "unconfirmed"
            if late == "first_audio_timeout" and (ahead := ahead_not_begun(self.tasks.values(), task, now)):
                att.deadline = ahead + self.config.first_audio_base_s  # heard after that one: not needed yet
            elif late is not None and not att.unconfirmed:
                actions += self._fail(task, late, now, Cause.ENGINE)
        return actions

    def probe_result(self, tier: str, ok: bool, now: float, reason: str = "") -> list[Action]:
        self._probing.discard(tier)
        breaker = self.breakers.get(tier)
        if breaker is None:
            return []
        return self._breaker_event(tier, breaker.record_probe(now, ok, reason))

    def _worker_changes(self, changes: list[WorkerChange], now: float) -> list[Action]:
        actions: list[Action] = [WorkerChanged(c) for c in changes]
        for change in changes:
            if change.up:
                continue
            for task in needed_first(list(self.tasks.values()), lambda t: t.sentence, now):
                if task.attempt is not None and task.attempt.worker_id == change.worker_id:
                    dead = change.reason in ("last_will", "missed_heartbeats")
                    actions += self._fail(
                        task, "worker_dead" if dead else f"worker_{change.reason}", now, Cause.WORKER_GONE
                    )
        return actions

    def _progressed(self, worker_id: str | None, now: float) -> None:
        if (w := self.registry.workers.get(worker_id or "")) is not None:
            budget_again(self.config, [self.tasks[j] for j in w.assigned if j in self.tasks], w.rtf, now)

    def _release(self, att: Attempt) -> None:
        if att.worker_id is not None:
            worker = self.registry.workers.get(att.worker_id)
            if worker is not None:
                worker.assigned.discard(att.job_id)

    def _new_job_id(self) -> str:
        return f"{self.job_prefix}{self._token()}"

    def _fail(self, task: Task, reason: str, now: float, cause: Cause) -> list[Action]:
        att = task.attempt
        assert att is not None
        self.tasks.pop(att.job_id, None)
        self._release(att)
        actions: list[Action] = [CancelJob(att.job_id, att.tier, att.worker_id, task.sentence.session_id)]
        if att.tier == WORKERS:
            task.worker_tries += 1
            # A broker outage is not the worker's fault: neither excluded nor cooled down. A dead (or
            # draining) worker is excluded for this sentence; liveness, not a cool-down, decides after.
            if att.worker_id is not None and cause is not Cause.BROKER:
                task.failed_workers.add(att.worker_id)
                if cause is Cause.ENGINE:
                    self.registry.cool_down(att.worker_id, now)
        else:
            if cause is not Cause.BUSY:  # a tier too busy to start it in time is not broken
                actions += self._breaker_event(att.tier, self.breakers[att.tier].record_failure(now, reason))
            task.tier_index += 1
        return actions + self._place(task, now, att.engine, reason)

    def _place(self, task: Task, now: float, from_engine: str | None, reason: str) -> list[Action]:
        """Start the task's next attempt on the first tier that can take it, or give up."""
        tiers = self.tiers
        s = task.sentence
        while task.tier_index < len(tiers):
            tier = tiers[task.tier_index]
            if tier == WORKERS and tier not in self.disabled:
                worker = None
                if task.worker_tries <= self.config.max_retries:
                    worker = self.registry.pick(now, exclude=task.failed_workers)
                if worker is not None:
                    job_id = self._new_job_id()
                    deadline = now + self.config.ack_timeout_s + self.config.timeout_s
                    task.attempt = Attempt(job_id, tier, worker.engine, worker.worker_id, now, deadline)
                    worker.assigned.add(job_id)
                    self.tasks[job_id] = task
                    send = SendJob(job_id, worker.worker_id, s, self.config.timeout_s)
                    return self._fell_back(task, from_engine, worker.engine, reason, now, send)
            elif tier not in self.disabled and not s.background and self.breakers[tier].allow(now):
                job_id = self._new_job_id()
                task.attempt = Attempt(job_id, tier, tier, None, now, now + self.config.timeout_s)
                self.tasks[job_id] = task
                return self._fell_back(task, from_engine, tier, reason, now, RunLocal(job_id, tier, s))
            task.tier_index += 1
        task.attempt = None
        give_up = GiveUp(s, reason or "no_voice_available")
        return self._fell_back(task, from_engine, "text", reason, now, give_up)

    def _fell_back(  # noqa: PLR0917
        self, task: Task, from_engine: str | None, to_engine: str, reason: str, now: float, then: Action
    ) -> list[Action]:
        """``then`` (the task's own next attempt) goes before the turn's other sentences follow it
        down (``_stick``): a capped tier starts the earliest sentence of the turn first."""
        if from_engine is None:
            return [then]
        actions: list[Action] = [FailedOver(task.sentence, from_engine, to_engine, reason), then]
        if task.tier_index > 0:
            actions += self._stick(task, now)
        return actions

    def _stick(self, task: Task, now: float) -> list[Action]:
        """Keep the rest of this turn on the tier it fell to (one audible switch, not a flip-flop)."""
        s = task.sentence
        current = self.sticky.get(s.session_id)
        level = (
            task.tier_index if current is None or current[0] != s.turn else max(current[1], task.tier_index)
        )
        self.sticky[s.session_id] = (s.turn, level)
        actions: list[Action] = []
        for other, att in followers(list(self.tasks.values()), task, level):
            self.tasks.pop(att.job_id, None)
            self._release(att)
            actions.append(CancelJob(att.job_id, att.tier, att.worker_id, s.session_id))
            other.tier_index = level
            actions += self._place(other, now, None, "")
        return actions

    def _breaker_event(self, tier: str, transition: Transition | None) -> list[Action]:
        if transition is None:
            return []
        return [TierChanged(tier, transition.to_state == "closed", transition.reason)]
