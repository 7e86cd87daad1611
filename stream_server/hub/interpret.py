"""The one place the cores' decisions are carried out: an action queue, carried out in order.

``Interpreter`` turns actions into effects (a frame for a client, a job on MQTT, a local engine
started, a metric, a log line). The hub builds it with the cores and adapters it acts on, and
callables for what it asks of the hub. Feeding a core while carrying out an action appends to the
same queue; nothing recurses. Session outputs travel as ``ForSession``, so the queue knows whose.
"""

from __future__ import annotations

from asyncio import Future
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from broker import logs, topics
from broker.messages import Job
from broker.wire import Message
from stream_server.audio_out.encode import encoded_frame
from stream_server.audio_out.encoder_pool import EncoderPool
from stream_server.config import GatewayConfig
from stream_server.core.actions import (
    WORKERS,
    Action,
    CancelJob,
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
from stream_server.core.cache import SentenceCache, cache_key
from stream_server.core.health import SampleHealth
from stream_server.core.jobs import JobTracker
from stream_server.core.preload import Preload, Preloader
from stream_server.core.scheduler import Scheduler
from stream_server.core.session_outs import CancelJobs, Dispatch, Emit, EmitAudio, EncodeAudio, Out, TurnOver
from stream_server.core.stamps import HopStamps
from stream_server.hub.live_sessions import CloseReason, SessionLink, Sessions
from stream_server.hub.local_tiers import LocalTiers
from stream_server.hub.observers import Observers
from stream_server.hub.send_pass import SendPass
from stream_server.hub.session_copies import SessionCopies
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.outbound import MqttOut, Publish

log = logs.get("sesame.gateway")

CHUNK_MS = 40


@dataclass(frozen=True, slots=True)
class ForSession:
    link: SessionLink
    out: Out


Work = Action | ForSession | Preload | SampleHealth


class Interpreter:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        scheduler: Scheduler,
        sessions: Sessions,
        cache: SentenceCache | None,
        jobs: JobTracker,
        stamps: HopStamps | None,
        preloader: Preloader,
        local: LocalTiers,
        encoder: EncoderPool,
        out: MqttOut,
        observers: Observers,
        close_session: Callable[[SessionLink, CloseReason], None],
        sample_health: Callable[[SampleHealth], None],
        deadline_moved: Callable[[], None],
    ) -> None:
        self.config, self.metrics, self.clock = config, metrics, clock
        self.scheduler = scheduler
        self.sessions = sessions
        self.cache = cache
        self.jobs = jobs
        self.stamps = stamps  # SESAME_DEBUG_STAMPS
        self.preloader = preloader
        self.local = local
        self.encoder = encoder  # mp3/ogg/flac off the event loop (audio_out/encoder_pool.py)
        self.out = out
        # Monitoring (stream_server/monitoring/hooks.py) sees every action carried out and heartbeat read.
        self.observers = observers
        self.close_session = close_session
        self._sample_health = sample_health
        self._deadline_moved = deadline_moved
        self._queue: deque[Work] = deque()
        self._running = False
        self.send_pass = SendPass()  # a socket's frames of one pass leave in one write (send_pass.py)
        self.copies = SessionCopies(out, self.send_pass, enabled=config.publish_session_events)
        self._timers_dirty = False  # a deadline may have moved earlier since the deadline task last looked

    # ---- feeding the queue -------------------------------------------------------------------

    def feed(self, work: Iterable[Work]) -> None:
        """What a core returned for an event. Any core event may move a deadline: the deadline task
        looks again once the queue has been run."""
        self._timers_dirty = True
        self._queue.extend(work)
        self._run_queue()

    def feed_session(self, link: SessionLink, outs: Iterable[Out]) -> None:
        """A session's outputs: a deadline moves if one becomes a scheduler action, or its lookahead's."""
        self._timers_dirty, link.core.dispatch_moved = self._timers_dirty or link.core.dispatch_moved, False
        self._queue.extend(ForSession(link, out) for out in outs)
        self._run_queue()

    def _run_queue(self) -> None:
        if self._running:
            return  # an outer run is going on: it will reach what was just queued
        self._running = True
        self.send_pass.begin()
        try:
            while True:
                while self._queue:
                    self._carry_out(self._queue.popleft())
                # Preloading only runs once everything else has been carried out.
                if not self.preloader.pending:
                    break
                preload = self.preloader.step(self.scheduler.busy(), self.clock())
                if not preload:
                    break
                self._queue.extend(preload)
        finally:
            self._running = False
            self.send_pass.end()
        if self._timers_dirty:  # a deadline may have moved earlier: the deadline task looks again
            self._timers_dirty = False
            self._deadline_moved()

    # ---- carrying out ------------------------------------------------------------------------

    def _carry_out(self, work: Work) -> None:
        match work:
            case ForSession(link=link, out=out):
                self._session_out(link, out)
            case Preload(sentence=s):
                self._queue.extend(self.scheduler.submit(s, self.clock()))
            case SampleHealth():
                self._sample_health(work)
            case _:
                self._action(work)

    def _session_out(self, link: SessionLink, out: Out) -> None:
        match out:
            case Emit(message=message):
                self.push(link, message)
                self.copies.event(link.session_id, message)
            case EmitAudio(frame=frame, seconds=seconds):
                link.core.playback.sent(seconds, self.clock())
                self.push(link, frame)
                self.copies.audio(link.session_id, frame)
            case EncodeAudio(seq=seq, sample_rate=rate, fmt=fmt, pcm=pcm):
                link.core.playback.sent(len(pcm) / 2 / rate, self.clock())
                # Off the event loop; what the session sends next waits behind it, in order.
                encoding = self.encoder.submit(encoded_frame, seq, rate, fmt, pcm)
                link.waiting.append(encoding)
                encoding.add_done_callback(lambda _: self._pump(link))
            case Dispatch(sentence=sentence):
                self.send_pass.frames_now()  # a first audio that released it goes first (issue 20)
                if self.stamps is not None:
                    self.stamps.cut(sentence.session_id, sentence.seq, self.clock())
                if self._from_cache(link, sentence):
                    pass
                elif self.sessions.admission.dispatch(sentence.session_id, sentence.seq):
                    # Its job out before the sentences after it are looked at (issue 20).
                    self._queue.extendleft(reversed(self._submit(link, sentence)))
                else:  # held: the client's share is in use, or the session is detached
                    self.metrics.dropped.labels("sentence_held").inc()
            case CancelJobs(session_id=session_id):
                self._queue.extend(self.scheduler.cancel_session(session_id))
                self.submit_released(self.sessions.admission.cancelled(session_id))
            case TurnOver(session_id=session_id, turn=turn):
                self.scheduler.end_turn(session_id, turn)

    def push(self, link: SessionLink, item: Message | bytes) -> None:
        if link.waiting:  # behind a sentence being encoded
            link.waiting.append(item)
            return
        self._push_now(link, item)

    def _pump(self, link: SessionLink) -> None:
        """Send what waited behind encodings, up to the next one not finished."""
        while link.waiting:
            head = link.waiting[0]
            if isinstance(head, Future):
                if not head.done():
                    return
                link.waiting.popleft()
                if head.cancelled():
                    continue
                if (exc := head.exception()) is not None:
                    log.error("encode_failed", session_id=link.session_id, error=repr(exc))
                    continue
                frame = head.result()
                self._push_now(link, frame)
                self.copies.audio(link.session_id, frame)
            else:
                self._push_now(link, link.waiting.popleft())  # type: ignore[arg-type]

    def _push_now(self, link: SessionLink, item: Message | bytes) -> None:
        if link.push(item):
            return
        self.metrics.dropped.labels("client_too_slow").inc()
        log.warning("client_too_slow", session_id=link.session_id, queued=link.out.qsize())
        link.close_reason = CloseReason.CLIENT_TOO_SLOW
        self.close_session(link, CloseReason.CLIENT_TOO_SLOW)
        link.end()

    def _action(self, action: Action) -> None:
        self._timers_dirty = True  # every scheduler action starts, ends or moves an attempt
        match action:
            case SendJob(job_id=job_id, worker_id=worker_id, sentence=s, expires_in_s=expires):
                self.jobs.sent(job_id, worker_id)
                reply_to = topics.reply_to(self.config.gateway_id, worker_id)
                need_in_s = round(max(0.0, s.need_at - self.clock()), 3)
                job = Job(
                    job_id, s.session_id, s.seq, s.text, s.voice, reply_to, s.sample_rate, need_in_s=need_in_s
                )  # fmt: skip
                if self.stamps is not None:
                    self.stamps.job(job_id, s.session_id, s.seq, self.clock())
                    job = replace(job, stamp=True)
                payload = job.to_bytes()
                expiry = max(1, round(expires))
                self.out.send(Publish(topics.worker_jobs(worker_id), payload, 1, job_id, expiry_s=expiry))
            case RunLocal(job_id=job_id, tier=tier, sentence=s):
                if not self.local.start(job_id, tier, s):
                    self._queue.extend(self.scheduler.failed(job_id, "engine_not_configured", self.clock()))
            case CancelJob(job_id=job_id, worker_id=worker_id):
                self.jobs.forget(job_id)
                if worker_id is not None:
                    self.out.cancel((job_id,))
                self.local.cancel(job_id)
            case FailedOver() | Completed() | GiveUp():
                self._sentence_outcome(action)
            case TierChanged(tier=tier, available=available, reason=reason):
                self.metrics.tier_available.labels(tier).set(1 if available else 0)
                log.warning("tier_availability", tier=tier, available=available, reason=reason)
            case WorkerChanged(change=change):
                if change.up:
                    self.preloader.worker_up()
                self.metrics.workers_up.set(self.scheduler.registry.ready_count(self.clock()))
                self.metrics.workers_alive.set(self.scheduler.registry.alive_count())
                log.warning("worker_change", worker_id=change.worker_id, up=change.up, reason=change.reason)
            case ProbeTier(tier=tier):
                self.local.probe(tier)
        self.observers(action)  # once carried out: a job is on the wire before monitoring sees it

    def _sentence_outcome(self, action: FailedOver | Completed | GiveUp) -> None:
        s = action.sentence
        link = self.sessions.get(s.session_id)
        match action:
            case FailedOver() if s.background:
                pass  # preloading is best effort; it is not a listener's fallback
            case FailedOver(from_engine=f, to_engine=t, reason=reason):
                self.metrics.fell_back(f, t, reason)
                log.warning(
                    "fallback", session_id=s.session_id, seq=s.seq, from_engine=f, to_engine=t, reason=reason
                )
                if link is not None:
                    self._feed_later(link, link.core.fell_back(s.seq, f, t, reason))
            case Completed(job_id=job_id, engine=engine, tier=tier, first_audio_s=first):
                if s.background:
                    log.info("phrase_preloaded", text=s.text, engine=engine)
                else:
                    self.metrics.sentence(engine, True, first)
                pcm = self.jobs.finish(job_id)
                if self.stamps is not None and (hops := self.stamps.take(job_id, s.session_id, s.seq)):
                    log.info("hop_stamps", job_id=job_id, session_id=s.session_id, seq=s.seq, hops=hops)
                if tier == WORKERS and pcm and self.cache is not None:
                    self.cache.put(cache_key(s.voice, s.sample_rate, s.text), pcm, engine, self.clock())
                self.submit_released(self.sessions.admission.finished(s.session_id, s.seq))
                if link is not None:
                    self._feed_later(link, link.core.sentence_done(s.seq))
            case GiveUp(reason=reason) if s.background:
                log.info("phrase_not_preloaded", text=s.text, reason=reason)
            case GiveUp(reason=reason):
                self.metrics.sentence("text", False, None)
                log.error("speech_failed", session_id=s.session_id, seq=s.seq, reason=reason)
                self.submit_released(self.sessions.admission.finished(s.session_id, s.seq))
                if link is not None:
                    message = f"no voice could speak this sentence ({reason})"
                    self._feed_later(link, link.core.sentence_failed(s.seq, "speech_unavailable", message))

    def submit_released(self, released: list[tuple[str, int]]) -> None:
        """Held sentences their client's share lets go now (core/admission.py)."""
        for session_id, seq in released:
            link = self.sessions.get(session_id)
            if link is not None and (st := link.core.sentences.get(seq)) is not None:
                self.feed(self._submit(link, st.sentence))

    def _submit(self, link: SessionLink, sentence: Sentence) -> list[Action]:
        """To the scheduler, with the time its listener will need it (the playback deadline)."""
        now = self.clock()
        need_at = link.core.playback.need_at(link.core.audio_ahead_s(sentence.seq), now)
        return self.scheduler.submit(replace(sentence, need_at=need_at), now)

    def _feed_later(self, link: SessionLink, outs: list[Out]) -> None:
        self._queue.extend(ForSession(link, out) for out in outs)

    def _from_cache(self, link: SessionLink, s: Sentence) -> bool:
        if self.cache is None:
            return False
        hit = self.cache.get(cache_key(s.voice, s.sample_rate, s.text), self.clock())
        self.metrics.cache.labels("hit" if hit else "miss").inc()
        if hit is None:
            return False
        # The cached PCM16 is cut as bytes: no decode to float and encode back for every hit (that
        # was 12% of the gateway's CPU serving 100 sessions from the cache), handed over at once.
        step = 2 * max(1, s.sample_rate * CHUNK_MS // 1000)
        pcm = hit.pcm
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        outs = [*link.core.audio(s.seq, hit.engine, chunks, cached=True), *link.core.sentence_done(s.seq)]
        self.metrics.sentence(hit.engine, True, 0.0)
        self._feed_later(link, outs)
        return True

    # ---- audio arriving ------------------------------------------------------------------------

    def audio(self, job_id: str, pcm: bytes) -> None:
        """Audio of ``job_id`` (a worker's or a local engine's) for its session."""
        current = self.scheduler.tasks.get(job_id)
        if current is not None and current.attempt is not None and current.attempt.first_audio_at is None:
            self._timers_dirty = True  # first audio: the attempt's deadline becomes the stall deadline
        task = self.scheduler.chunk(job_id, self.clock())
        if task is None or task.attempt is None:
            return  # a late chunk of an attempt that was failed over or cancelled
        self.jobs.keep(job_id, pcm)
        s = task.sentence
        if self.stamps is not None:
            self.stamps.mark(job_id, "audio_in", self.clock())
        if (link := self.sessions.get(s.session_id)) is not None:
            self.feed_session(link, link.core.audio(s.seq, task.attempt.engine, pcm))
        if self.stamps is not None:
            self.stamps.mark(job_id, "frame_queued", self.clock())
