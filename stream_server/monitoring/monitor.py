"""The monitoring adapter: runs the probe and alert cores, persists samples, sends alerts.

``Monitor`` owns one TaskGroup (tasks ``monitor-deadlines``, ``monitor-store``, one per local-tier
probe; the alert sender's ``alert-webhook`` posts are in its own), its own MQTT link for the
primary's probe jobs (client id ``{gateway}-monitor``, replies on
``sesame/v1/replies/{gateway}-probe/...``), and the ``UptimeStore``. The gateway feeds it events
(``sentence``, ``fell_back``, ``tier_changed``, ``worker_changed``, ``heartbeat``, ``restart``);
none of them blocks or awaits. Its one deadline task (``broker.deadlines``) sleeps until the
earliest ``next_deadline()`` of its cores (probe rounds and timeouts, pending alerts, webhook
retries, the store's compaction), never on a polling tick; SQLite writes run in
``asyncio.to_thread`` from the ``monitor-store`` task, in order (a queue consumer, not a timer).

What the probes and alerts decide is in probes.py and alerts.py; the status page's JSON is built
by status_view.py from ``Monitor`` and the gateway's ``GatewayView``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from broker import logs
from broker.deadlines import DeadlineLoop
from broker.messages import Heartbeat
from broker.settings import MqttNodes
from stream_server.config import MonitorConfig
from stream_server.core.expiry import ExpiryBook
from stream_server.monitoring.alerts import Alert, AlertConfig, AlertCore
from stream_server.monitoring.crash_watch import CrashWatch
from stream_server.monitoring.gateway_view import Changes, GatewayView
from stream_server.monitoring.metrics import Metrics
from stream_server.monitoring.probe_runner import ProbeRunner
from stream_server.monitoring.probes import (
    PRIMARY,
    CancelProbe,
    ProbeAction,
    ProbeCore,
    RoundDone,
    Sample,
    StartProbe,
)
from stream_server.monitoring.store_writer import (
    Figures,
    Job,
    StoreWriter,
    Then,
    load_open_alerts,
    read_figures,
)
from stream_server.monitoring.uptime_store import Incident, UptimeStore
from stream_server.monitoring.webhook import WebhookSender
from synth_worker.engine import Engine

log = logs.get("sesame.monitor")

SERVICE = "service"  # "some voice could speak": the any-path sample of each round
COMPACT_EVERY_S = 300.0
COMPACT = "compact"
MIN_SAMPLES_FOR_UPTIME_ALERT = 60


class Monitor:
    def __init__(
        self,
        config: MonitorConfig,
        *,
        interval_s: float,
        probe_timeout_s: float,
        paths: tuple[str, ...],
        engines: Mapping[str, Engine],
        voice: str,
        mqtt_url: MqttNodes,
        gateway_id: str,
        metrics: Metrics,
        view: GatewayView,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.view = view
        self.clock = clock
        self.paths = paths
        self.probes = ProbeCore(paths, interval_s=interval_s, timeout_s=probe_timeout_s)
        self.alerts = AlertCore(AlertConfig(config.alert_after_s, config.uptime_target))
        self.writer: StoreWriter | None = None
        self.figures = Figures()  # the persisted figures, refreshed after each round
        self.recent: list[Incident] = []
        self.restarts: dict[str, int] = {}
        self.crash_watch = CrashWatch()
        self.primary_up: bool | None = None
        self.primary_reason = ""
        self.changes = Changes()  # the status page's live updates wait on it
        self._up_workers: set[str] = set()
        self.deadlines = DeadlineLoop(self.next_deadline, self.handle_timer, clock)
        self._compaction = ExpiryBook()  # one key: when the store is compacted next
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # its own, so stopping needs no TaskGroup privates
        hook, wake = config.alert_webhook, self.deadlines.wake
        self.sender = (
            WebhookSender(hook, clock=clock, wake=wake, source=gateway_id, on_outcome=self._delivery)
            if hook
            else None
        )
        self.runner = ProbeRunner(
            mqtt_url=mqtt_url, gateway_id=gateway_id, engines=engines, voice=voice,
            timeout_s=self.probes.timeout_s, on_result=self._probe_result, spawn=self._spawn,
        )  # fmt: skip

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Monitor:
        store = await asyncio.to_thread(UptimeStore, self.config.state_dir)
        self.writer = StoreWriter(store, lambda: self.metrics.dropped.labels("uptime_write").inc())
        self.recent = await asyncio.to_thread(store.incidents, 50)
        self.alerts.restore(await asyncio.to_thread(load_open_alerts, store))
        self._figures_changed(await asyncio.to_thread(self._read_figures, store))
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.sender is not None:
            await self.sender.__aenter__()
        await self.runner.prepare()
        await self.runner.link.__aenter__()
        now = self.clock()
        self.probes.start(now)
        self._compaction.expire_at(COMPACT, now)
        self._spawn(self.deadlines.run(), "monitor-deadlines")
        self._spawn(self.writer.run(), "monitor-store")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.runner.link.close()
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        assert self._tg is not None
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tg.__aexit__(None, None, None)
        if self.writer is not None:
            await self.writer.close()

    # ---- events from the gateway (never block) ------------------------------------------------

    def sentence(self, path: str, ok: bool) -> None:
        """A listener's sentence finished on ``path`` (``workers`` or a tier) or failed there."""
        self._apply(self.probes.traffic(path, ok, self.clock()))

    def listener_needs(self, path: str) -> None:
        """A listener's sentence is about to run on ``path``: a probe there gives way."""
        self._apply(self.probes.preempt(path, self.clock()))

    def tier_changed(self, tier: str, available: bool, reason: str) -> None:
        now = self.clock()
        kind = "recovery" if available else "fault"
        text = f"fallback tier {tier} {'is available again' if available else 'is unavailable'} ({reason})"
        self._incident(now, kind, tier, text)
        self._notify(self.alerts.breaker(tier, available, reason, now))

    def operator(self, path: str, text: str) -> None:
        """An operator changed something by hand (the tier switch): an incident of its own kind."""
        self._incident(self.clock(), "operator", path, text)

    def worker_changed(self, worker_id: str, up: bool, reason: str) -> None:
        now = self.clock()
        if not up:
            self.metrics.monitor.worker_down(worker_id)
            if worker_id in self._up_workers:  # not a worker that never got ready
                self._up_workers.discard(worker_id)
                self._incident(now, "fault", PRIMARY, f"worker {worker_id} went down ({reason})")
            if not self.view.ready_workers():
                self._primary(False, now, f"no ready worker ({reason})")
        else:
            self._up_workers.add(worker_id)
            self._incident(now, "recovery", PRIMARY, f"worker {worker_id} is ready")
            self.probes.start(now)  # probe at once: a recovery is confirmed by Bark speaking
            self.deadlines.wake()

    def heartbeat(self, hb: Heartbeat, up: bool) -> None:
        self.metrics.monitor.heartbeat(hb, up)
        if self.runner.primary_worker() == hb.worker_id and hb.queue_depth > 0:
            self.listener_needs(PRIMARY)  # a listener's job waits behind the probe on that worker

    def restart(self, role: str, name: str, reason: str, *, restarts: int, looping: bool) -> None:
        """The supervisor says a child started (``looping``) or stopped crash-looping."""
        now = self.clock()
        self.restarts[name] = restarts
        text = f"{role} {name} " + (
            f"is crash-looping ({restarts} {role} restarts, mostly {reason})"
            if looping
            else "is stable again"
        )
        self._incident(now, "fault" if looping else "recovery", role, text)
        self._notify(
            self.alerts.crash_loop(role, name, looping=looping, restarts=restarts, reason=reason, now=now)
        )

    async def _watch_supervisor(self) -> None:
        """Once a round: the supervisor's state file (when there is one), crash loops out of it."""
        state = await asyncio.to_thread(self.view.supervisor_state)
        for e in self.crash_watch.update(state):
            self.restart(e.role, e.name, e.reason, restarts=e.restarts, looping=e.looping)

    # ---- carrying out the cores' actions ------------------------------------------------------

    def _apply(self, actions: list[ProbeAction]) -> None:
        for action in actions:
            match action:
                case StartProbe(probe_id=probe_id, path=path) if path == PRIMARY:
                    self._start_primary(probe_id)
                case StartProbe(probe_id=probe_id, path=path):
                    self.runner.start_local(probe_id, path)
                case CancelProbe(probe_id=probe_id):
                    self.runner.cancel(probe_id)
                case Sample() as sample:
                    self._sample(sample)
                case RoundDone(at=at, any_ok=any_ok):
                    log.info("probe_round_done", any_ok=any_ok)
                    self._write(functools.partial(UptimeStore.record, path=SERVICE, now=at, ok=any_ok))
                    self._write(self._read_figures, self._figures_changed)
                    self._spawn(self._watch_supervisor(), "monitor-supervisor")
        if actions:  # none: no probe started or ended, no deadline moved (every job of a listener
            self.deadlines.wake()  # asks for a preempt: waking the task then cost its first audio)

    def _sample(self, s: Sample) -> None:
        self.metrics.monitor.sample(s.path, s.ok, s.latency_s)
        latency_ms = None if s.latency_s is None else s.latency_s * 1000.0
        self._write(lambda store: store.record(s.path, s.at, s.ok, latency_ms))
        if s.path == PRIMARY:
            self._primary(s.ok, s.at, s.reason)
        elif not s.ok and s.source == "probe":
            self.view.tier_probe_failed(s.path, s.reason)  # listeners skip it before they meet it
        self.changes.notify()

    def _primary(self, up: bool, now: float, reason: str) -> None:
        if up != self.primary_up:
            log.info("primary_voice", up=up, reason=reason)
        if up != self.primary_up and self.primary_up is not None:
            kind, text = (
                ("recovery", "the primary voice speaks again")
                if up
                else ("fault", f"the primary voice failed its health check ({reason})")
            )
            self._incident(now, kind, PRIMARY, text)
        self.primary_up, self.primary_reason = up, reason
        self._notify(self.alerts.primary(up, now, reason))

    def _notify(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.metrics.monitor.alerts.labels(alert.kind, alert.state).inc()
            kind = "alert" if alert.state == "firing" else "recovery"
            self._incident(alert.at, kind, alert.key, alert.summary)
            log.warning("alert", key=alert.key, state=alert.state, summary=alert.summary)
            if self.sender is not None:
                self.sender.send(alert)
        open_alerts = self.alerts.open_alerts()
        self.metrics.monitor.alerts_active.set(len(open_alerts))
        if alerts:
            rows: list[tuple[str, str, float, str]] = [
                (a.key, a.kind, a.since, a.summary) for a in open_alerts
            ]
            self._write(functools.partial(UptimeStore.save_open_alerts, alerts=rows))
        self.deadlines.wake()

    def _incident(self, now: float, kind: str, path: str, text: str) -> None:
        incident = Incident(now, kind, path, text)
        self.recent = [incident, *self.recent[:49]]
        self._write(lambda store: store.incident(now, kind, path, text))
        self.changes.notify()

    def _delivery(self, outcome: str) -> None:
        self.metrics.monitor.alert_deliveries.labels(outcome).inc()

    # ---- probes -------------------------------------------------------------------------------

    def _start_primary(self, probe_id: str) -> None:
        now = self.clock()
        ready = self.view.ready_workers()
        idle = [wid for wid, busy in ready if not busy]
        if idle:
            self.runner.start_primary(probe_id, idle[0], now)
        elif ready:  # every worker serves listeners: up while it is serving
            self._probe_result(probe_id, True, None, "serving")
        else:
            self._probe_result(probe_id, False, None, "no_ready_worker")

    def _probe_result(self, probe_id: str, ok: bool, latency_s: float | None, reason: str) -> None:
        self._apply(self.probes.probe_result(probe_id, ok, latency_s, reason, self.clock()))

    # ---- loops and the store ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        timed = (
            self.probes.next_deadline(),
            self.alerts.next_deadline(),
            self._compaction.next_deadline(),
            None if self.sender is None else self.sender.next_deadline(),
        )
        return min((d for d in timed if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        ready = self.view.ready_workers()
        self.probes.busy(PRIMARY, bool(ready) and all(busy for _, busy in ready))
        for tier in self.paths:
            if tier != PRIMARY:
                self.probes.busy(tier, tier in self.view.busy_tiers())
        self._apply(self.probes.handle_timer(now))
        self._notify(self.alerts.handle_timer(now))
        if self._compaction.handle_timer(now):
            self._compaction.expire_at(COMPACT, now + COMPACT_EVERY_S)
            self._write(functools.partial(UptimeStore.compact, now=now))
        if self.sender is not None:
            self.sender.handle_timer(now)

    def _write(self, job: Job, then: Then | None = None) -> None:
        assert self.writer is not None
        self.writer.write(job, then)

    def _read_figures(self, store: UptimeStore) -> Figures:
        paths = (*self.paths, SERVICE)
        return read_figures(store, paths, PRIMARY, self.clock(), self.config.uptime_target)

    def _figures_changed(self, figures: Figures) -> None:
        self.figures = figures
        mon = self.metrics.monitor
        for path, windows in figures.uptime.items():
            for window, value in windows.items():
                if value is not None:
                    mon.uptime.labels(path, window).set(value)
        if figures.month:
            mon.downtime_month.labels(PRIMARY).set(figures.month["downtimeMinutes"])
            mon.downtime_budget.set(figures.month["budgetMinutes"])
        day = figures.uptime.get(PRIMARY, {}).get("24h")
        if day is not None and figures.day_samples >= MIN_SAMPLES_FOR_UPTIME_ALERT:
            self._notify(self.alerts.uptime(day, self.clock()))
        self.changes.notify()

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        assert self._tg is not None
        task: asyncio.Task[None] = self._tg.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
