"""The gateway's hub: events in, the pure cores decide, the ``Interpreter`` carries out their actions,
in order, without recursion, on one event loop (no locks). The ``deadlines`` task sleeps until the
earliest ``next_deadline()`` of ``_timed()``'s cores, or an event moves it. I/O: ``mqtt/``, local_tiers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from broker import logs, topics
from broker.deadlines import DeadlineLoop
from broker.errors import ProtocolError
from broker.link import MqttLink
from broker.wire import Message
from broker.ws_protocol import Error
from stream_server.audio_out.encoder_pool import EncoderPool
from stream_server.config import GatewayConfig
from stream_server.core.actions import WORKERS, Cause
from stream_server.core.cache import SentenceCache
from stream_server.core.health import HealthSampler, Readiness, SampleHealth, WorkerReadiness
from stream_server.core.jobs import JobTracker
from stream_server.core.preload import Preloader
from stream_server.core.scheduler import Scheduler
from stream_server.core.stamps import HopStamps
from stream_server.hub.detached import Detached
from stream_server.hub.fair_share import FairShare
from stream_server.hub.interpret import Interpreter, Work
from stream_server.hub.live_sessions import CloseReason, SessionLink, Sessions
from stream_server.hub.local_tiers import (
    LocalAudio,
    LocalDone,
    LocalEvent,
    LocalFailed,
    LocalStarted,
    LocalTiers,
    ProbeDone,
)
from stream_server.hub.observers import Observers
from stream_server.hub.recorder import Recorder
from stream_server.hub.send_pass import SendPass
from stream_server.hub.shutdown import Drainer
from stream_server.hub.shutdown_target import HubDrainTarget
from stream_server.hub.tier_operator import FILE_NAME as TIER_SWITCH_FILE
from stream_server.hub.tier_operator import TierOperator
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.inbound import route
from stream_server.mqtt.link_events import LinkEvents
from stream_server.mqtt.outbound import MqttOut, Publish
from stream_server.mqtt.topic_sessions import MqttSessions
from synth_worker.engine import Engine
from synth_worker.voices import VoiceMap

log = logs.get("sesame.gateway")

__all__ = ["Hub", "SessionLink"]


class Hub:
    def __init__(
        self,
        config: GatewayConfig,
        voices: VoiceMap,
        engines: dict[str, Engine],
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        link: MqttLink | None = None,
        observers: Observers | None = None,
    ) -> None:
        self.config = config
        self.voices = voices
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.scheduler = Scheduler(config.failover, job_prefix=f"{config.gateway_id}.")
        self.tier_operator = TierOperator(self.scheduler, Path(config.monitor.state_dir) / TIER_SWITCH_FILE)
        self.sessions = Sessions.from_config(config)
        self.cache = (
            SentenceCache(int(config.cache_max_mb * 1e6), config.cache_ttl_s)
            if config.cache_enabled
            else None
        )
        self.jobs = JobTracker()
        self.stamps = HopStamps() if config.debug_stamps else None
        self.preloader = Preloader(config.preload_phrases, voices.default, self.cache)
        self.health = HealthSampler(config.health_check_interval_s, clock())
        self.recorder = Recorder.from_config(config.record_dir, config.gateway_id)
        self.link = link or MqttLink(
            config.mqtt_url,
            config.gateway_id,
            subscriptions=[
                (topics.ALL_HEARTBEATS, 0),
                (topics.ALL_STATUSES, 1),
                (topics.all_replies(config.gateway_id), 1),
                (topics.ALL_SESSION_TEXT, 1),
                *MqttSessions.subscriptions(),
            ],
        )
        self.link.on_message_now = self._on_mqtt  # in the read that brings it (broker/read_now.py)
        self.link.on_caught_up = self._caught_up
        self.out = MqttOut(self.link, self.metrics, self._job_unsent)
        self.mqtt_sessions = MqttSessions(self)
        self.link_events = LinkEvents(self.link, self.metrics, self.out, self.mqtt_sessions, self._moved)
        self.detached = Detached(self)
        self.encoder = EncoderPool(config.encode_threads)
        self.local = LocalTiers(
            engines, voices.default, config.failover.timeout_s, self._spawn, self._local,
            caps=config.local_tier_caps, queue_s=config.local_tier_queue_s,
            last_resort=config.failover.tiers[-1], clock=clock,
        )  # fmt: skip
        self.observers = observers or Observers()
        self.deadlines = DeadlineLoop(self.next_deadline, self.handle_timer, clock)
        self.drainer = Drainer(
            HubDrainTarget(self), config.drain_timeout_s, clock=clock, wake=self.deadline_moved
        )
        self.interpreter = Interpreter(
            config,
            metrics=self.metrics,
            clock=clock,
            scheduler=self.scheduler,
            sessions=self.sessions,
            cache=self.cache,
            jobs=self.jobs,
            stamps=self.stamps,
            preloader=self.preloader,
            local=self.local,
            encoder=self.encoder,
            out=self.out,
            observers=self.observers,
            close_session=self.close_session,
            sample_health=self._sample_health,
            deadline_moved=self.deadline_moved,
        )
        self.fair = FairShare(self.interpreter)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stack: contextlib.AsyncExitStack | None = None
        for tier in (t for t in config.failover.tiers if t != WORKERS):
            self.metrics.tier_available.labels(tier).set(1)

    # ---- lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """The hub's tasks, in one TaskGroup; on the way out they are cancelled and awaited."""
        try:
            async with asyncio.TaskGroup() as tg, self.link:
                self._tg = tg
                self._spawn(self.out.run(self.out.control), "gateway-mqtt-control")
                self._spawn(self.out.run(self.out.bulk), "gateway-mqtt-session-copies")
                self._spawn(self.deadlines.run(), "gateway-deadlines")
                try:
                    yield self
                finally:
                    self.local.cancel_all()
                    self.encoder.close()
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self._tg = None
            if self.recorder is not None:
                self.recorder.close()

    async def __aenter__(self) -> Hub:
        self._stack = contextlib.AsyncExitStack()
        return await self._stack.enter_async_context(self.running())

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stack is not None
        return await self._stack.__aexit__(et, e, tb)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the hub is not running")
        task = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- sessions -----------------------------------------------------------------------------

    def open_session(
        self,
        voice: str | None = None,
        sample_rate: int = 24_000,
        fmt: str = "pcm16",
        *,
        resumable: bool = False,
        session_id: str | None = None,
        client: str | None = None,
    ) -> SessionLink:
        """A new session of ``client`` (its share: hub/fair_share.py). ``resumable`` (websocket) keeps
        frames for a resume; ``session_id`` (MQTT-only) is the publisher's. Both are claimed, so
        other gateways leave their MQTT input alone (core/claims.py)."""
        resolved = self.voices.get(voice).name
        frames = self.config.resume_frames if resumable and self.config.resume_grace_s > 0 else 0
        link = self.fair.open(resolved, sample_rate, fmt, session_id=session_id, frames=frames, client=client)
        if resumable or session_id is not None:
            self.mqtt_sessions.claim(link.session_id)
        self.metrics.sessions.set(len(self.sessions))
        log.info("session_open", session_id=link.session_id, voice=resolved)
        return link

    def close_session(self, link: SessionLink, reason: CloseReason = CloseReason.CLOSED) -> None:
        """Disconnect: cancel the session's queued and running jobs everywhere."""
        released = self.sessions.close(link, reason)
        if released is None:
            return
        self.metrics.sessions.set(len(self.sessions))
        assert link.close_reason is not None
        log.info("session_closed", session_id=link.session_id, reason=link.close_reason.value)
        if self.stamps is not None:
            self.stamps.forget_session(link.session_id)
        self.mqtt_sessions.release(link.session_id)
        link.end()  # whatever reads the session's queue stops
        self.feed(self.scheduler.cancel_session(link.session_id))
        self.interpreter.submit_released(released)

    def refuse(self, link: SessionLink, exc: ProtocolError, path: str = "websocket") -> None:
        """Answer bad client input with an error frame; the session keeps serving."""
        self.metrics.bad_input.labels(path, exc.code).inc()
        self.interpreter.push(link, Error(exc.code, str(exc)))
        if path == "mqtt":
            self.publish_event(link.session_id, exc)

    def publish_event(self, session_id: str, event: Message | ProtocolError) -> None:
        """A message for the session's MQTT subscribers only (an MQTT-only session's ready, or an
        error for input that came over MQTT)."""
        if isinstance(event, ProtocolError):
            event = Error(event.code, str(event))
        self.out.send(Publish(topics.session_events(session_id), event.to_bytes(), 1), control=False)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self._spawn(coro, name)

    def feed(self, work: Iterable[Work]) -> None:
        self.interpreter.feed(work)

    def audio(self, job_id: str, pcm: bytes) -> None:
        self.interpreter.audio(job_id, pcm)

    @property
    def send_pass(self) -> SendPass:
        return self.interpreter.send_pass

    def deadline_moved(self) -> None:
        """A core's next deadline may be earlier now: the deadline task looks again."""
        self.deadlines.wake()

    def receive(self, link: SessionLink, msg: Message) -> None:
        """A decoded client message. ProtocolError propagates to the caller (it answers the client)."""
        if msg.type == "start":
            self.voices.get(getattr(msg, "voice", None))  # unknown voice -> ProtocolError
        now = self.clock()
        if self.stamps is not None:
            self.stamps.text_in(link.session_id, now)
        steps = link.core.steps(msg, now)
        first = next(steps)  # a refused message raises here, before anything is recorded or done
        if self.recorder is not None:
            self.recorder.record_message(link.session_id, now, msg)
        for outs in itertools.chain((first,), steps):  # a speak's rest is cut once its first job is out
            self.interpreter.feed_session(link, outs)

    # ---- events from the edges -------------------------------------------------------------------

    def _on_mqtt(self, topic: str, payload: bytes) -> None:
        try:
            route(self, topic, payload)
        except ProtocolError as exc:
            # Any publisher can reach these topics: bad input is counted and logged, nothing else.
            self.metrics.bad_input.labels("mqtt", exc.code).inc()
            log.warning("bad_mqtt_payload", topic=topic, code=exc.code, error=str(exc))

    def _moved(self) -> None:
        """The link landed on another broker node: worker jobs in flight go out again."""
        self.feed(self.scheduler.broker_moved(self.clock(), self.link.lost_at))

    def _caught_up(self) -> None:  # the MQTT reader has read all that came: judge silences
        self.feed(self.scheduler.caught_up(self.clock())) if self.scheduler.unconfirmed() else None

    def _job_unsent(self, job_id: str, reason: str) -> None:
        self.feed(self.scheduler.failed(job_id, reason, self.clock(), Cause.BROKER))

    def _local(self, event: LocalEvent) -> None:
        now = self.clock()
        match event:
            case LocalStarted(job_id=job_id):
                self.feed(self.scheduler.ack(job_id, now))
            case LocalAudio(job_id=job_id, pcm=pcm):
                self.audio(job_id, pcm)
            case LocalDone(job_id=job_id):
                self.feed(self.scheduler.done(job_id, now))
            case LocalFailed(job_id=job_id, code=code, busy=busy):
                self.feed(self.scheduler.failed(job_id, code, now, Cause.BUSY if busy else Cause.ENGINE))
            case ProbeDone(tier=tier, ok=ok, reason=reason):
                self.feed(self.scheduler.probe_result(tier, ok, now, reason))

    # ---- time ------------------------------------------------------------------------------------

    def _timed(self) -> list[float | None]:
        return [
            self.scheduler.next_deadline(),
            self.health.next_deadline(),
            self.mqtt_sessions.next_deadline(),
            self.local.next_deadline(),
            self.detached.next_deadline(),
            self.sessions.next_deadline(),
            self.drainer.next_deadline(),
        ]

    def next_deadline(self) -> float | None:
        return min((d for d in self._timed() if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Wake every core whose deadline has passed and carry out what they decide."""
        read_through = self.link.read_through(now)
        self.feed([*self.scheduler.handle_timer(now, read_through), *self.health.handle_timer(now)])
        for link, outs in self.sessions.wake(now):  # lookahead: a buffer played down to its budget
            self.interpreter.feed_session(link, outs)
        self.mqtt_sessions.handle_timer(now)
        self.local.handle_timer(now)
        self.detached.handle_timer(now)
        self.drainer.handle_timer(now)

    # ---- status for HTTP ---------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        tiers = self.scheduler.available_tiers(self.clock())
        return Readiness(
            ready=bool(tiers),
            tiers=tuple(tiers),
            broker_connected=self.link.connected.is_set(),
            broker_node=None if self.link.node is None else str(self.link.node),
            workers=tuple(WorkerReadiness.of(w) for w in self.scheduler.registry.workers.values()),
            sessions=len(self.sessions),
        )

    def _sample_health(self, _: SampleHealth) -> None:
        now = self.clock()
        tiers = self.scheduler.available_tiers(now)
        self.metrics.uptime.record(bool(tiers), WORKERS in tiers)
        self.metrics.workers_up.set(self.scheduler.registry.ready_count(now))
