"""The worker's job logic, without I/O: a plain class fed events, handing back actions.

``WorkerCore`` holds the state (loading -> warming -> ready; draining; unavailable), the bounded
job queue and the jobs running now. The asyncio adapter (``synth_worker.worker.process.Worker``) feeds it MQTT
payloads, engine outcomes and the clock (``now`` is passed in; the core never reads a clock), and
carries out what it returns:

    Send(topic, message, qos)  publish a JSON message (acks, done, job errors)
    StartJob(jobs)                synthesize these jobs now (one batch: same voice, run together)
    Stop(job_id)               a running job was cancelled: set its cancel token

Rules, in the order a job meets them (each refusal is a JobError with the code in brackets):
- a payload that does not decode is counted and logged; if it still names a usable job_id and
  reply_to, that job gets the decoder's code (``bad_message``, ``bad_field``, ``text_too_long``...);
- a job id already queued or running is a redelivery: ignored;
- ``unavailable`` (no model): [worker_unavailable]; ``draining``: [draining];
- past its ``expires_at``: [expired] (checked again when it would start);
- longer than SESAME_MAX_LENGTH characters: [text_too_long];
- [overloaded] when it cannot meet its listener's need (job_deadline.py), or SESAME_MAX_QUEUE wait
  (memory: of them and the newcomer, the one that would start last goes; first sentences stay);
- else it is queued and acknowledged with its place in the start order (jobs running plus the
  queued jobs that would start before it; a job arriving later may still pass it: see below).
One batch at a time, led by the job whose listener needs it first (broker/deadline_order.py). A cancel
drops queued jobs and stops running ones ([cancelled]); draining refuses queued ones ([draining]).

Healing: an ``unavailable`` worker may become ``warming``/``ready`` again (the adapter retries the
model on a schedule). A running job is **stuck** when it has run longer than
``max(stuck_floor_s, stuck_factor x rtf x expected audio length)`` (the expected length from the
text at ``CHARS_PER_SECOND``; the measured RTF, or 1 before any job has been measured);
``next_deadline()`` says when the next running job would become stuck and ``stuck(now)`` lists
those that are: the adapter reports them and exits so its supervisor replaces the process.
"""

from __future__ import annotations

from collections import deque

from broker import logs, topics
from broker.errors import EngineUnavailable, ProtocolError, error_code
from broker.messages import (
    Cancel,
    Heartbeat,
    Job,
    JobAck,
    JobDone,
    JobError,
    WorkerState,
)
from synth_worker.job_actions import Action, Send, StartJob, Stop
from synth_worker.job_deadline import CHARS_PER_SECOND, LATE_S, Running, late_by_s, refusal
from synth_worker.job_figures import Counters, Rtf
from synth_worker.job_intake import JobOrder, decode_as, salvage_ids

log = logs.get("sesame.worker")


class WorkerCore:
    def __init__(
        self,
        worker_id: str,
        *,
        engine: str,
        model: str,
        pid: int,
        interval_s: float,
        max_queue: int = 256,
        max_length: int = 200,
        max_batch: int = 1,
        version: str = "0",
        stuck_factor: float = 10.0,
        stuck_floor_s: float = 60.0,
        max_late_s: float = LATE_S,
    ) -> None:
        self.worker_id = topics.check_id(worker_id, "worker_id")
        self.engine = engine
        self.model = model
        self.pid = pid
        self.interval_s = interval_s
        self.max_queue = max_queue
        self.max_length = max_length
        self.max_batch = max(1, max_batch)
        self.version = version
        self.stuck_factor = stuck_factor
        self.stuck_floor_s = stuck_floor_s
        self.max_late_s = max_late_s  # SESAME_MAX_LATE_MS: refused as overloaded when later than that
        self.started_at: dict[str, float] = {}  # running job id -> when it started
        self.state: WorkerState = "loading"
        self.reason: str | None = None
        self.queue: deque[Job] = deque()
        self.order = JobOrder(max_sessions=4 * max_queue + 64)
        self.running: dict[str, Job] = {}
        self.counters = Counters()
        self._rtf = Rtf()
        self._seq = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def warming(self) -> None:
        if self.state in ("loading", "unavailable"):
            self.state, self.reason = "warming", None

    def ready(self, now: float) -> list[Action]:
        """The engine can speak (at start, or healed after ``unavailable``)."""
        if self.state not in ("loading", "warming", "unavailable"):
            return []
        self.state, self.reason = "ready", None
        return self._maybe_start(now)

    def unavailable(self, reason: str) -> list[Action]:
        """The engine cannot run. Queued jobs are refused; the worker keeps heartbeating the reason."""
        if self.state == "draining":
            self.reason = reason
            return []
        self.state, self.reason = "unavailable", reason
        return [self._error(job, "worker_unavailable", reason) for job in self._take_queue()]

    def give_up(self, reason: str) -> list[Action]:
        """A job is stuck: every job here fails (``worker_stuck``) and the worker is unavailable."""
        jobs = [*self.running.values(), *self._take_queue()]
        self.running.clear()
        self.started_at.clear()
        self.state, self.reason = "unavailable", reason
        self.counters.failed += len(jobs)
        return [self._error(job, "worker_stuck", reason) for job in jobs]

    def drain(self) -> list[Action]:
        """SIGTERM: refuse what waits, let the running batch finish."""
        self.state = "draining"
        return [self._error(job, "draining", "worker is shutting down") for job in self._take_queue()]

    # --- stuck jobs ------------------------------------------------------------------------------

    @property
    def rtf(self) -> float:
        """Measured seconds of compute per second of audio (0 until measured)."""
        return self._rtf.value

    def stuck_limit_s(self, job: Job) -> float:
        expected_audio_s = len(job.text) / CHARS_PER_SECOND
        rtf = self._rtf.value or 1.0
        return max(self.stuck_floor_s, self.stuck_factor * rtf * expected_audio_s)

    def next_deadline(self) -> float | None:
        """When the earliest running job becomes stuck (None when nothing runs)."""
        return min(
            (self.started_at[j] + self.stuck_limit_s(job) for j, job in self.running.items()),
            default=None,
        )

    def stuck(self, now: float) -> list[tuple[Job, float]]:
        """Running jobs past their limit, each with how long it has run."""
        return [
            (job, now - self.started_at[j])
            for j, job in self.running.items()
            if now >= self.started_at[j] + self.stuck_limit_s(job)
        ]

    @property
    def idle(self) -> bool:
        return not self.running and not self.queue

    # --- inputs ----------------------------------------------------------------------------------

    def receive_job(self, payload: bytes, now: float) -> list[Action]:
        try:
            job = decode_as(payload, Job)
        except ProtocolError as exc:
            return self._bad_job(payload, exc)
        if job.job_id in self.running or any(q.job_id == job.job_id for q in self.queue):
            self.counters.duplicates += 1
            log.info("job_duplicate_ignored", job_id=job.job_id)
            return []
        if self.state == "unavailable":
            self.counters.rejected += 1
            return [self._error(job, "worker_unavailable", self.reason or "engine unavailable")]
        if self.state == "draining":
            self.counters.rejected += 1
            return [self._error(job, "draining", "worker is shutting down")]
        if job.expires_at is not None and job.expires_at <= now:
            self.counters.expired += 1
            return [self._error(job, "expired", "job expired before it was queued")]
        if len(job.text) > self.max_length:
            self.counters.rejected += 1
            too_long = f"text has {len(job.text)} characters; limit {self.max_length}"
            return [self._error(job, "text_too_long", too_long)]
        startable = self.state == "ready" and not self.running and not self.queue
        self.order.queued(job, now)
        order = self.order.order(deque([*self.queue, job]), now)
        ahead = next(i for i, j in enumerate(order) if j is job)
        why = None if startable else self._cannot_meet(job, order[:ahead], now)
        last, shed = (job if why else None), list[Action]()
        if last is None and len(self.queue) >= self.max_queue and not startable:  # bound on memory:
            last, why = self.order.last(self.queue, job, now), f"queue full ({self.max_queue} jobs waiting)"
        if last is not None and why is not None:  # the job that would start last goes
            self.counters.rejected += 1
            log.warning("job_overloaded", job_id=last.job_id, for_job=job.job_id, why=why)
            shed = [self._error(last, "overloaded", why)]
            self.order.forget(last.job_id)
            if last is job:
                return shed
            self.queue.remove(last)
        self.queue.append(job)
        ahead += len(self.running)  # what was shed would have started after it
        self.counters.accepted += 1
        log.info(
            "job_accepted", job_id=job.job_id, session_id=job.session_id, ahead=ahead, chars=len(job.text)
        )
        ack = JobAck(job_id=job.job_id, worker_id=self.worker_id, queue_position=ahead)
        return [*shed, Send(topics.job_events(job.reply_to, job.job_id), ack), *self._maybe_start(now)]

    def receive_cancel(self, payload: bytes) -> list[Action]:
        try:
            message = decode_as(payload, Cancel)
        except ProtocolError as exc:
            self.counters.bad_messages += 1
            log.warning("bad_cancel_message", code=exc.code, error=str(exc), size=len(payload))
            return []

        def named(job: Job) -> bool:
            return job.job_id in message.job_ids or (
                message.session_id is not None and job.session_id == message.session_id
            )

        actions: list[Action] = []
        for job in [j for j in self.queue if named(j)]:
            self.queue.remove(job)
            self.order.forget(job.job_id)
            self.counters.cancelled += 1
            actions.append(self._error(job, "cancelled", "cancelled while queued"))
        actions.extend(Stop(job.job_id) for job in self.running.values() if named(job))
        if actions:
            ids, sid = list(message.job_ids), message.session_id
            log.info("jobs_cancelled", job_ids=ids, session_id=sid, actions=len(actions))
        return actions

    def job_done(
        self, job_id: str, *, chunks: int, samples: int, sample_rate: int, synth_s: float, now: float
    ) -> list[Action]:
        job = self.running.pop(job_id, None)
        self.started_at.pop(job_id, None)
        if job is None:
            return []
        self.counters.done += 1
        audio_s = samples / sample_rate if sample_rate else 0.0
        self._rtf.add(synth_s, audio_s)
        done = JobDone(
            job_id=job_id,
            worker_id=self.worker_id,
            chunks=chunks,
            samples=samples,
            sample_rate=sample_rate,
            engine=self.engine,
            synth_ms=round(synth_s * 1000.0, 3),
        )
        log.info(
            "job_done", job_id=job_id, chunks=chunks, audio_s=round(audio_s, 3), synth_s=round(synth_s, 3)
        )
        return [Send(topics.job_events(job.reply_to, job_id), done), *self._maybe_start(now)]

    def job_failed(self, job_id: str, exc: BaseException, now: float) -> list[Action]:
        job = self.running.pop(job_id, None)
        self.started_at.pop(job_id, None)
        if job is None:
            return []
        actions: list[Action] = []
        if isinstance(exc, EngineUnavailable):
            code = "worker_unavailable"
            actions += self.unavailable(str(exc))
        else:
            code = error_code(exc)
        if code == "cancelled":
            self.counters.cancelled += 1
            log.info("job_cancelled", job_id=job_id)
        else:
            self.counters.failed += 1
            log.warning("job_failed", job_id=job_id, code=code, error=str(exc) or type(exc).__name__)
        message = str(exc) or type(exc).__name__
        if code == "internal_error":
            message = "internal error in the worker"  # details stay in the log
        return [self._error(job, code, message), *actions, *self._maybe_start(now)]

    def heartbeat(self, now: float) -> Heartbeat:
        self._seq += 1
        return Heartbeat(
            worker_id=self.worker_id,
            pid=self.pid,
            state=self.state,
            engine=self.engine,
            model=self.model,
            seq=self._seq,
            sent_at=now,
            interval_s=self.interval_s,
            jobs_in_flight=len(self.running),
            queue_depth=len(self.queue),
            rtf=round(self._rtf.value, 4),
            reason=self.reason if self.state in ("unavailable", "draining") else None,
            version=self.version,
        )

    def _cannot_meet(self, job: Job, ahead: list[Job], now: float) -> str | None:
        running = [Running(self.started_at[j], r.text) for j, r in self.running.items()]
        need_at, texts = self.order.need_at[job.job_id], [a.text for a in ahead]
        late = late_by_s(need_at, job.text, running, texts, self.rtf, now, self.max_batch)
        return refusal(late, self.max_late_s)

    def _maybe_start(self, now: float) -> list[Action]:
        if self.running or self.state not in ("ready",):
            return []
        actions: list[Action] = []
        batch: list[Job] = []
        for job in self.order.order(self.queue, now):
            if len(batch) >= self.max_batch:
                break
            if job.expires_at is not None and job.expires_at <= now:
                self.queue.remove(job)
                self.order.forget(job.job_id)
                self.counters.expired += 1
                actions.append(self._error(job, "expired", "job expired while queued"))
                continue
            if batch and job.voice != batch[0].voice:
                continue
            self.queue.remove(job)
            batch.append(job)
        for job in batch:
            self.running[job.job_id] = job
            self.started_at[job.job_id] = now
            self.order.started(job, (*self.queue, *self.running.values()))
        if batch:
            actions.append(StartJob(tuple(batch)))
        return actions

    def _take_queue(self) -> list[Job]:
        jobs, self.queue = list(self.queue), deque()
        self.order.clear()
        return jobs

    def _error(self, job: Job, code: str, message: str) -> Send:
        return Send(
            topics.job_events(job.reply_to, job.job_id),
            JobError(job_id=job.job_id, worker_id=self.worker_id, code=code, message=message),
        )

    def _bad_job(self, payload: bytes, exc: ProtocolError) -> list[Action]:
        self.counters.bad_messages += 1
        job_id, reply_to = salvage_ids(payload)
        log.warning("bad_job_message", code=exc.code, error=str(exc), size=len(payload), job_id=job_id)
        if job_id is None or reply_to is None:
            return []
        error = JobError(job_id=job_id, worker_id=self.worker_id, code=exc.code, message=str(exc))
        return [Send(topics.job_events(reply_to, job_id), error)]
