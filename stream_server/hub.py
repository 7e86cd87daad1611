"""The gateway's asyncio edge: MQTT link, sessions, local fallback engines, the scheduler clock.

Everything here is an adapter: it reads from a wire, feeds the pure cores (``Scheduler``,
``SessionCore``) and carries out the actions they return. All cores are driven from this one
event loop, so they need no locks.

Back-pressure: each session has a bounded outgoing queue (``OUT_QUEUE_FRAMES``). A client that does
not read fills it; the session is then closed with ``client_too_slow`` (counted in
``sesame_dropped_total{what="client_too_slow"}``) rather than letting memory grow. MQTT publishes of
session events go through a bounded queue; when it is full, those copies are dropped and counted
(the websocket client still gets everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from broker import logs, topics
from broker.audio import AudioFrame, chunk_samples, from_pcm16, resample, to_pcm16
from broker.errors import BrokerError, EngineCancelled, EngineError, ProtocolError, error_code
from broker.link import MqttLink
from broker.messages import Cancel, Heartbeat, Job, JobAck, JobDone, JobError, WorkerStatus, worker_messages
from broker.wire import Message
from synth_worker.engine import CancelToken, Engine, SynthesisRequest
from synth_worker.voices import VoiceMap

from .cache import SentenceCache, cache_key
from .config import GatewayConfig
from .metrics import Metrics
from .protocol import Error, Flush, SessionText, Text, session_text_messages
from .recorder import Recorder
from .scheduler import (
    WORKERS,
    Action,
    CancelJob,
    Completed,
    FellBack,
    GiveUp,
    Probe,
    RunLocal,
    Scheduler,
    SendJob,
    Sentence,
    TierChanged,
    WorkerChanged,
)
from .session import CancelJobs, Dispatch, Emit, EmitAudio, Out, SessionCore, TurnOver

log = logs.get("sesame.gateway")

OUT_QUEUE_FRAMES = 4000  # ~160 s of 40 ms frames per session
MQTT_OUT_QUEUE = 20_000
TICK_S = 0.05
CHUNK_MS = 40
PROBE_TEXT = "Probe."
PRELOAD_SESSION = "preload"

Outgoing = str | bytes | None  # None: the session is closing


@dataclass(eq=False)
class SessionLink:
    core: SessionCore
    out: asyncio.Queue[Outgoing] = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE_FRAMES))
    closed: bool = False
    close_reason: str | None = None

    @property
    def session_id(self) -> str:
        return self.core.session_id


@dataclass(slots=True)
class LocalJob:
    task: asyncio.Task[None]
    token: CancelToken


class Hub:
    def __init__(
        self,
        config: GatewayConfig,
        voices: VoiceMap,
        engines: dict[str, Engine],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.voices = voices
        self.engines = engines
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.scheduler = Scheduler(config.failover, job_prefix=f"{config.gateway_id}.")
        self.reply_to = topics.reply_root(config.gateway_id)
        self.sessions: dict[str, SessionLink] = {}
        self.cache = (
            SentenceCache(int(config.cache_max_mb * 1e6), config.cache_ttl_s)
            if config.cache_enabled
            else None
        )
        self._local: dict[str, LocalJob] = {}
        self._job_pcm: dict[str, list[bytes]] = {}  # primary-tier audio kept for the cache
        self._job_chunks: dict[str, int] = {}
        self._pending_done: dict[str, JobDone] = {}
        # Jobs and cancels have their own queue and publisher, so they never wait behind the bulk
        # copies of session audio for MQTT listeners.
        self._control_out: asyncio.Queue[tuple[str, bytes, int, str | None]] = asyncio.Queue(MQTT_OUT_QUEUE)
        self._bulk_out: asyncio.Queue[tuple[str, bytes, int, str | None]] = asyncio.Queue(MQTT_OUT_QUEUE)
        self._tg: asyncio.TaskGroup | None = None
        self.recorder = Recorder.from_config(config.record_dir, config.gateway_id)
        self._preloaded = False
        self._preload_queue: deque[Sentence] = deque()
        self.started_at = time.time()
        self.link = MqttLink(
            config.mqtt_url,
            f"{config.gateway_id}",
            subscriptions=[
                (topics.ALL_HEARTBEATS, 0),
                (topics.ALL_STATUSES, 1),
                (topics.all_replies(config.gateway_id), 1),
                (topics.ALL_SESSION_TEXT, 1),
            ],
            on_message=self._on_mqtt,
            on_connect=self._on_connect,
        )
        # Cancels that could not be published (broker down) are sent again on reconnect, so a
        # worker does not spend its time on sentences nobody is waiting for.
        self._unsent_cancels: set[str] = set()
        # Monitoring (stream_server/monitor_hooks.py): sees every action carried out and heartbeat read.
        self.observers: list[Callable[[Action | Heartbeat], None]] = []
        for tier in config.failover.tiers:
            if tier != WORKERS:
                self.metrics.tier_available.labels(tier).set(1)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Hub:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        await self.link.__aenter__()
        self._tg.create_task(self._ticker(), name="gateway-ticker")
        self._tg.create_task(self._publisher(self._control_out), name="gateway-mqtt-control")
        self._tg.create_task(self._publisher(self._bulk_out), name="gateway-mqtt-session-copies")
        self._tg.create_task(self._health_loop(), name="gateway-health")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for job in self._local.values():
            job.token.cancel()
            job.task.cancel()
        await self.link.close()
        if self.recorder is not None:
            self.recorder.close()
        assert self._tg is not None
        for task in list(getattr(self._tg, "_tasks", ())):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tg.__aexit__(None, None, None)

    # ---- sessions -----------------------------------------------------------------------------

    def open_session(
        self, voice: str | None = None, sample_rate: int = 24_000, fmt: str = "pcm16"
    ) -> SessionLink:
        if len(self.sessions) >= self.config.max_sessions:
            raise ProtocolError("the gateway is at its session limit", code="overloaded")
        resolved = self.voices.get(voice).name
        session_id = uuid.uuid4().hex[:20]
        core = SessionCore(
            session_id,
            voice=resolved,
            sample_rate=sample_rate,
            fmt=fmt,
            max_length=self.config.max_length,
            first_chunk_min_chars=self.config.first_chunk_min_chars,
            lookahead=self.config.lookahead,
        )
        link = SessionLink(core)
        self.sessions[session_id] = link
        self.metrics.sessions.set(len(self.sessions))
        log.info("session_open", session_id=session_id, voice=resolved)
        return link

    def close_session(self, link: SessionLink, reason: str = "closed") -> None:
        """Disconnect: cancel the session's queued and running jobs everywhere."""
        if self.sessions.pop(link.session_id, None) is None:
            return
        link.closed = True
        link.close_reason = link.close_reason or reason
        self._run(self.scheduler.cancel_session(link.session_id))
        self.metrics.sessions.set(len(self.sessions))
        log.info("session_closed", session_id=link.session_id, reason=link.close_reason)

    def refuse(self, link: SessionLink, exc: ProtocolError, path: str = "websocket") -> None:
        """Answer bad client input with an error frame; the session keeps serving."""
        self.metrics.bad_input.labels(path, exc.code).inc()
        self._emit(link, Error(exc.code, str(exc)).to_json())

    def receive(self, link: SessionLink, msg: Message) -> None:
        """A decoded client message. ProtocolError propagates to the caller (it answers the client)."""
        if msg.type == "start":
            self.voices.get(getattr(msg, "voice", None))  # unknown voice -> ProtocolError
        now = self.clock()
        outs = link.core.receive(msg, now)
        if self.recorder is not None:
            self.recorder.record_message(link.session_id, now, msg)
        self._handle(link, outs)

    # ---- carrying out the cores' decisions ------------------------------------------------------

    def _handle(self, link: SessionLink, outs: list[Out]) -> None:
        for out in outs:
            match out:
                case Emit(message=message):
                    self._emit(link, message.to_json())
                    if self.config.publish_session_events:
                        self._mqtt(
                            topics.session_events(link.session_id), message.to_bytes(), 0, control=False
                        )
                case EmitAudio(frame=frame):
                    self._emit(link, frame)
                    if self.config.publish_session_events:
                        self._mqtt(topics.session_audio(link.session_id), frame, 0, control=False)
                case Dispatch(sentence=sentence):
                    if not self._from_cache(link, sentence):
                        self._run(self.scheduler.submit(sentence, self.clock()))
                case CancelJobs(session_id=session_id):
                    self._run(self.scheduler.cancel_session(session_id))
                case TurnOver(session_id=session_id, turn=turn):
                    self.scheduler.end_turn(session_id, turn)

    def _emit(self, link: SessionLink, item: str | bytes) -> None:
        if link.closed:
            return
        try:
            link.out.put_nowait(item)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("client_too_slow").inc()
            link.close_reason = "client_too_slow"
            log.warning("client_too_slow", session_id=link.session_id, queued=link.out.qsize())
            self.close_session(link, "client_too_slow")
            with contextlib.suppress(asyncio.QueueEmpty):
                link.out.get_nowait()  # make room for the closing marker
            link.out.put_nowait(None)

    def _mqtt(
        self, topic: str, payload: bytes, qos: int, job_id: str | None = None, control: bool = True
    ) -> None:
        queue = self._control_out if control else self._bulk_out
        try:
            queue.put_nowait((topic, payload, qos, job_id))
        except asyncio.QueueFull:
            self.metrics.dropped.labels("mqtt_publish").inc()
            if job_id is not None:
                self._run(self.scheduler.failed(job_id, "broker_backlog", self.clock()))

    def carry_out(self, actions: list[Action]) -> None:
        """Actions decided outside the scheduler (the monitor's breaker news)."""
        self._run(actions)

    def _run(self, actions: list[Action]) -> None:
        queue: deque[Action] = deque(actions)
        while queue:
            action = queue.popleft()
            for observe in self.observers:
                observe(action)
            match action:
                case SendJob(job_id=job_id, worker_id=worker_id, sentence=s, expires_in_s=expires):
                    self._job_pcm[job_id] = []
                    job = Job(
                        job_id,
                        s.session_id,
                        s.seq,
                        s.text,
                        s.voice,
                        self.reply_to,
                        self._session_rate(s.session_id),
                        expires_at=time.time() + expires,
                    )
                    self._mqtt(topics.worker_jobs(worker_id), job.to_bytes(), 1, job_id)
                case RunLocal(job_id=job_id, tier=tier, sentence=s):
                    self._start_local(job_id, tier, s)
                case CancelJob(job_id=job_id, worker_id=worker_id):
                    self._forget_job(job_id)
                    if worker_id is not None:
                        self._mqtt(topics.CANCEL, Cancel(job_ids=(job_id,)).to_bytes(), 1)
                    local = self._local.pop(job_id, None)
                    if local is not None:
                        local.token.cancel()
                        local.task.cancel()
                case FellBack(sentence=s) if s.background:
                    pass  # preloading is best effort; it is not a listener's fallback
                case FellBack(sentence=s, from_engine=f, to_engine=t, reason=reason):
                    self.metrics.fell_back(f, t, reason)
                    log.warning(
                        "fallback",
                        session_id=s.session_id,
                        seq=s.seq,
                        from_engine=f,
                        to_engine=t,
                        reason=reason,
                    )
                    if (link := self.sessions.get(s.session_id)) is not None:
                        self._handle(link, link.core.fell_back(s.seq, f, t, reason))
                case Completed(sentence=s, job_id=job_id, engine=engine, tier=tier, first_audio_s=first):
                    if s.background:
                        log.info("phrase_preloaded", text=s.text, engine=engine)
                    else:
                        self.metrics.sentence(engine, True, first)
                    pcm = self._job_pcm.pop(job_id, None)
                    if tier == WORKERS and pcm and self.cache is not None:
                        key = cache_key(s.voice, self._session_rate(s.session_id), s.text)
                        self.cache.put(key, b"".join(pcm), engine, self.clock())
                    self._forget_job(job_id)
                    if (link := self.sessions.get(s.session_id)) is not None:
                        self._handle(link, link.core.sentence_done(s.seq))
                case GiveUp(sentence=s, reason=reason) if s.background:
                    log.info("phrase_not_preloaded", text=s.text, reason=reason)
                case GiveUp(sentence=s, reason=reason):
                    self.metrics.sentence("text", False, None)
                    log.error("speech_failed", session_id=s.session_id, seq=s.seq, reason=reason)
                    if (link := self.sessions.get(s.session_id)) is not None:
                        message = f"no voice could speak this sentence ({reason})"
                        self._handle(link, link.core.sentence_failed(s.seq, "speech_unavailable", message))
                case TierChanged(tier=tier, available=available, reason=reason):
                    self.metrics.tier_available.labels(tier).set(1 if available else 0)
                    log.warning("tier_availability", tier=tier, available=available, reason=reason)
                case WorkerChanged(change=change):
                    if change.up:
                        self._plan_preload()
                    self.metrics.workers_up.set(self.scheduler.registry.ready_count(self.clock()))
                    self.metrics.workers_alive.set(self.scheduler.registry.alive_count())
                    log.warning(
                        "worker_change", worker_id=change.worker_id, up=change.up, reason=change.reason
                    )
                case Probe(tier=tier):
                    self._spawn(self._probe(tier), f"probe:{tier}")

    def _plan_preload(self) -> None:
        """Once, when the first worker is ready: queue the common phrases for the cache."""
        if self._preloaded or self.cache is None:
            return
        self._preloaded = True
        voice = self.voices.default
        self._preload_queue.extend(
            Sentence(PRELOAD_SESSION, 0, seq, text, voice, background=True)
            for seq, text in enumerate(self.config.preload_phrases)
        )

    def _preload_step(self, now: float) -> list[Action]:
        """One phrase at a time, and only while nothing else is being synthesized: preloading
        never makes a listener wait."""
        if not self._preload_queue or self.scheduler.tasks or self.cache is None:
            return []
        sentence = self._preload_queue.popleft()
        if self.cache.get(cache_key(sentence.voice, 24_000, sentence.text), now) is not None:
            return []
        return self.scheduler.submit(sentence, now)

    def _session_rate(self, session_id: str) -> int:
        link = self.sessions.get(session_id)
        return link.core.sample_rate if link is not None else 24_000

    def _forget_job(self, job_id: str) -> None:
        self._job_chunks.pop(job_id, None)
        self._pending_done.pop(job_id, None)

    def _from_cache(self, link: SessionLink, s: Sentence) -> bool:
        if self.cache is None:
            return False
        hit = self.cache.get(cache_key(s.voice, link.core.sample_rate, s.text), self.clock())
        self.metrics.cache.labels("hit" if hit else "miss").inc()
        if hit is None:
            return False
        outs: list[Out] = []
        for chunk in chunk_samples(from_pcm16(hit.pcm), link.core.sample_rate, CHUNK_MS):
            outs += link.core.audio(s.seq, hit.engine, to_pcm16(chunk), cached=True)
        outs += link.core.sentence_done(s.seq)
        self.metrics.sentence(hit.engine, True, 0.0)
        self._handle(link, outs)
        return True

    # ---- audio arriving ---------------------------------------------------------------------

    def _audio(self, job_id: str, pcm: bytes) -> None:
        task = self.scheduler.chunk(job_id, self.clock())
        if task is None or task.attempt is None:
            return  # a late chunk of an attempt that was failed over or cancelled
        pcm_list = self._job_pcm.get(job_id)
        if pcm_list is not None:
            pcm_list.append(pcm)
        s = task.sentence
        if (link := self.sessions.get(s.session_id)) is not None:
            self._handle(link, link.core.audio(s.seq, task.attempt.engine, pcm))

    def _start_local(self, job_id: str, tier: str, s: Sentence) -> None:
        engine = self.engines.get(tier)
        if engine is None:
            self._run(self.scheduler.failed(job_id, "engine_not_configured", self.clock()))
            return
        token = CancelToken()
        task = self._spawn(self._local_job(job_id, engine, s, token), f"local:{tier}:{job_id}")
        self._local[job_id] = LocalJob(task, token)

    async def _local_job(self, job_id: str, engine: Engine, s: Sentence, token: CancelToken) -> None:
        rate = self._session_rate(s.session_id)
        request = SynthesisRequest(s.text, s.voice, rate)
        try:
            async for chunk in engine.synthesize(request, token):
                if token.cancelled:
                    return
                samples = (
                    chunk.samples
                    if chunk.sample_rate == rate
                    else resample(chunk.samples, chunk.sample_rate, rate)
                )
                self._audio(job_id, to_pcm16(samples))
        except (EngineCancelled, asyncio.CancelledError):
            return
        except EngineError as exc:
            self._local.pop(job_id, None)
            log.warning("local_engine_failed", tier=engine.name, job_id=job_id, code=exc.code, error=str(exc))
            self._run(self.scheduler.failed(job_id, exc.code, self.clock()))
            return
        except Exception as exc:  # an engine bug must not take the gateway down
            self._local.pop(job_id, None)
            log.exception("local_engine_crashed", tier=engine.name, job_id=job_id)
            self._run(self.scheduler.failed(job_id, error_code(exc), self.clock()))
            return
        self._local.pop(job_id, None)
        self._run(self.scheduler.done(job_id, self.clock()))

    async def _probe(self, tier: str) -> None:
        engine = self.engines.get(tier)
        ok, reason = False, "not_configured"
        if engine is not None:
            try:
                async with asyncio.timeout(self.config.failover.timeout_s):
                    async for _ in engine.synthesize(
                        SynthesisRequest(PROBE_TEXT, self.voices.default), CancelToken()
                    ):
                        pass
                ok, reason = True, "probe_ok"
            except (EngineError, TimeoutError) as exc:
                reason = error_code(exc)
            except Exception as exc:
                log.exception("probe_crashed", tier=tier)
                reason = error_code(exc)
        self._run(self.scheduler.probe_result(tier, ok, self.clock(), reason))

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        assert self._tg is not None
        return self._tg.create_task(coro, name=name)  # type: ignore[arg-type]

    # ---- MQTT in ------------------------------------------------------------------------------

    async def _on_mqtt(self, topic: str, payload: bytes) -> None:
        try:
            self._dispatch_mqtt(topic, payload)
        except ProtocolError as exc:
            # Any publisher can reach these topics: bad input is counted and logged, nothing else.
            self.metrics.bad_input.labels("mqtt", exc.code).inc()
            log.warning("bad_mqtt_payload", topic=topic, code=exc.code, error=str(exc))

    def _dispatch_mqtt(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        if topic.startswith(self.reply_to + "/"):
            job_id, kind = topics.reply_parts(topic)
            if kind == "audio":
                frame = AudioFrame.from_bytes(payload)
                self._job_chunks[job_id] = self._job_chunks.get(job_id, 0) + 1
                self._audio(job_id, frame.payload)
                pending = self._pending_done.get(job_id)
                if pending is not None and self._job_chunks.get(job_id, 0) >= pending.chunks:
                    self._run(self.scheduler.done(job_id, self.clock()))
                return
            msg = worker_messages.decode(payload)
            match msg:
                case JobAck(queue_position=pos):
                    self._run(self.scheduler.ack(job_id, now, pos))
                case JobDone() as done:
                    # Audio and events travel on two topics; wait until every chunk is here.
                    if self._job_chunks.get(job_id, 0) >= done.chunks:
                        self._run(self.scheduler.done(job_id, now))
                    else:
                        self._pending_done[job_id] = done
                case JobError(code=code):
                    self._run(self.scheduler.failed(job_id, code, now))
                case _:
                    raise ProtocolError(
                        f"unexpected {msg.type!r} on a reply topic", code="unexpected_message"
                    )
        elif topic.endswith("/heartbeat"):
            hb = worker_messages.decode(payload)
            if not isinstance(hb, Heartbeat) or topics.worker_id_of(topic) != hb.worker_id:
                raise ProtocolError("heartbeat topic and payload disagree", code="bad_heartbeat")
            actions = self.scheduler.heartbeat(hb, now)
            for observe in self.observers:
                observe(hb)
            self._run(actions)
        elif topic.endswith("/status"):
            st = worker_messages.decode(payload)
            if not isinstance(st, WorkerStatus) or topics.worker_id_of(topic) != st.worker_id:
                raise ProtocolError("status topic and payload disagree", code="bad_status")
            self._run(self.scheduler.status(st, now))
        elif topic.endswith("/text"):
            session_id = topics.session_id_of(topic)
            link = self.sessions.get(session_id)
            if link is None:
                raise ProtocolError(f"no live session {session_id}", code="unknown_session")
            msg = session_text_messages.decode(payload)
            assert isinstance(msg, SessionText)
            self.receive(link, Text(msg.text))
            if msg.flush:
                self.receive(link, Flush())

    # ---- loops --------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                now = self.clock()
                self._run(self.scheduler.tick(now) + self._preload_step(now))
            except Exception:  # a bug in one decision must not stop the clock for everyone
                log.exception("tick_failed")

    async def _publisher(self, queue: asyncio.Queue[tuple[str, bytes, int, str | None]]) -> None:
        while True:
            topic, payload, qos, job_id = await queue.get()
            try:
                await self.link.publish(topic, payload, qos=qos)
            except BrokerError as exc:
                if topic == topics.CANCEL:
                    cancel = worker_messages.decode(payload)
                    if isinstance(cancel, Cancel):
                        self._unsent_cancels.update(cancel.job_ids)
                if job_id is not None:
                    log.warning("job_publish_failed", job_id=job_id, error=str(exc))
                    self._run(self.scheduler.failed(job_id, "broker_unavailable", self.clock()))

    async def _on_connect(self, link: MqttLink) -> None:
        if self._unsent_cancels:
            job_ids, self._unsent_cancels = tuple(sorted(self._unsent_cancels)), set()
            log.info("resending_cancels", jobs=len(job_ids))
            self._mqtt(topics.CANCEL, Cancel(job_ids=job_ids).to_bytes(), 1)

    async def _health_loop(self) -> None:
        while True:
            now = self.clock()
            tiers = self.scheduler.available_tiers(now)
            self.metrics.uptime.record(bool(tiers), WORKERS in tiers)
            self.metrics.workers_up.set(self.scheduler.registry.ready_count(now))
            await asyncio.sleep(self.config.health_check_interval_s)

    # ---- status for HTTP ----------------------------------------------------------------------

    def readiness(self) -> dict[str, object]:
        now = self.clock()
        tiers = self.scheduler.available_tiers(now)
        workers = [
            {
                "worker_id": w.worker_id,
                "state": w.state,
                "alive": w.alive,
                "engine": w.engine,
                "model": w.model,
                "reason": w.reason,
                "queue_depth": w.queue_depth,
                "rtf": w.rtf,
            }
            for w in self.scheduler.registry.workers.values()
        ]
        return {
            "ready": bool(tiers),
            "tiers": tiers,
            "broker_connected": self.link.connected.is_set(),
            "workers": workers,
            "sessions": len(self.sessions),
        }
