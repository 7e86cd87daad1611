"""Synthetic probes that speak: the plan's ``performHealthCheck``, one round per interval. Pure.

Every ``interval_s`` (SESAME_HEALTH_CHECK_INTERVAL) a round checks each voice path: the primary
(``workers``: Bark on a worker over MQTT) and each in-process tier (elevenlabs, edge-tts,
espeak-ng). For each path the round records one ``Sample``: ok or failed, with the latency of a
real synthesis of ``PROBE_TEXT``.

Probes never delay a listener:

- A path that served listeners' sentences since the last round is sampled from that traffic
  (ok if any of it succeeded) and is not probed at all: "busy serving counts as up if serving".
- A path with a listener's sentence in synthesis right now is not probed either (``busy``).
- The adapter sends the primary's probe as the lowest-priority job (a background sentence, only
  when no listener's sentence waits) and cancels it when a listener's sentence arrives
  (``preempt``); a cancelled probe leaves the round to the traffic that displaced it.

Events in: ``handle_timer(now)``, ``probe_result(...)``, ``traffic(path, ok, now)``,
``busy(path, busy)``, ``preempt(path, now)``. Actions out: ``StartProbe``, ``CancelProbe``,
``Sample``, ``RoundDone``. ``next_deadline()`` says when to call ``handle_timer`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRIMARY = "workers"
PROBE_TEXT = "Probe."


@dataclass(frozen=True, slots=True)
class StartProbe:
    """Run one short real synthesis on ``path`` and report it with ``probe_result(probe_id, ...)``."""

    probe_id: str
    path: str


@dataclass(frozen=True, slots=True)
class CancelProbe:
    probe_id: str
    path: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One health observation of a path: what the uptime store records."""

    path: str
    at: float
    ok: bool
    latency_s: float | None  # None when nothing was synthesized (no worker, timed out)
    reason: str  # probe_ok, served, or why it failed
    source: str  # "probe" or "traffic"


@dataclass(frozen=True, slots=True)
class RoundDone:
    """Every path of a round has its sample: ``any_ok`` is "some voice could speak"."""

    at: float
    any_ok: bool
    primary_ok: bool


ProbeAction = StartProbe | CancelProbe | Sample | RoundDone


@dataclass(slots=True)
class _InFlight:
    probe_id: str
    started_at: float


@dataclass(slots=True)
class _PathState:
    served_ok: int = 0
    served_failed: int = 0
    busy: bool = False
    in_flight: _InFlight | None = None
    last: Sample | None = None


@dataclass(slots=True)
class _Round:
    at: float
    waiting: set[str] = field(default_factory=set)
    ok: dict[str, bool] = field(default_factory=dict)


class ProbeCore:
    def __init__(self, paths: tuple[str, ...], *, interval_s: float, timeout_s: float) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be positive")
        if len(set(paths)) != len(paths) or not paths:
            raise ValueError("paths must be distinct and not empty")
        self.paths = paths
        self.interval_s = interval_s
        self.timeout_s = min(timeout_s, interval_s)  # a round ends before the next one starts
        self._state = {p: _PathState() for p in paths}
        self._next_round: float | None = None
        self._round: _Round | None = None
        self._seq = 0

    # ---- queries ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [s.in_flight.started_at + self.timeout_s for s in self._state.values() if s.in_flight]
        if self._next_round is not None:
            deadlines.append(self._next_round)
        return min(deadlines) if deadlines else None

    def last(self, path: str) -> Sample | None:
        return self._state[path].last

    # ---- events -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin probing: the first round is due at once."""
        self._next_round = now

    def traffic(self, path: str, ok: bool, now: float) -> list[ProbeAction]:
        """A listener's sentence on ``path`` finished (``ok``) or failed there."""
        state = self._state.get(path)
        if state is None:
            return []
        if ok:
            state.served_ok += 1
        else:
            state.served_failed += 1
        rnd = self._round
        if rnd is not None and path in rnd.waiting and state.in_flight is None:
            return self._close_path(path, now)  # this round was waiting on that traffic
        return []

    def busy(self, path: str, busy: bool) -> None:
        """Whether a listener's sentence is in synthesis on ``path`` now."""
        if path in self._state:
            self._state[path].busy = busy

    def preempt(self, path: str, now: float) -> list[ProbeAction]:
        """A listener's sentence needs ``path``: drop its probe; the traffic decides the sample."""
        del now
        state = self._state.get(path)
        if state is None or state.in_flight is None:
            return []
        probe_id = state.in_flight.probe_id
        state.in_flight = None
        state.busy = True
        return [CancelProbe(probe_id, path)]

    def probe_result(
        self, probe_id: str, ok: bool, latency_s: float | None, reason: str, now: float
    ) -> list[ProbeAction]:
        for path, state in self._state.items():
            if state.in_flight is not None and state.in_flight.probe_id == probe_id:
                state.in_flight = None
                return self._record(Sample(path, now, ok, latency_s if ok else None, reason, "probe"))
        return []  # timed out or cancelled already: its sample was taken another way

    def handle_timer(self, now: float) -> list[ProbeAction]:
        actions: list[ProbeAction] = []
        for path, state in self._state.items():
            if state.in_flight is not None and now >= state.in_flight.started_at + self.timeout_s:
                actions.append(CancelProbe(state.in_flight.probe_id, path))  # the runner has no timer
                state.in_flight = None
                actions += self._record(Sample(path, now, False, None, "probe_timeout", "probe"))
        if self._next_round is not None and now >= self._next_round:
            actions += self._begin_round(now)
        return actions

    # ---- internals ----------------------------------------------------------------------------

    def _begin_round(self, now: float) -> list[ProbeAction]:
        self._next_round = now + self.interval_s
        actions: list[ProbeAction] = []
        if self._round is not None:  # a path that never reported (a preempted probe, no traffic yet)
            for path in sorted(self._round.waiting):
                actions += self._close_path(path, now)
        self._round = _Round(now, waiting=set(self.paths))
        for path, state in self._state.items():
            if state.served_ok or state.served_failed:
                ok = state.served_ok > 0
                reason = "served" if ok else "served_failed"
                state.served_ok = state.served_failed = 0
                actions += self._record(Sample(path, now, ok, None, reason, "traffic"))
            elif state.busy:
                continue  # sampled from its traffic when that finishes (or at the next round)
            elif state.in_flight is None:
                self._seq += 1
                state.in_flight = _InFlight(f"probe-{self._seq}", now)
                actions.append(StartProbe(state.in_flight.probe_id, path))
        return actions

    def _close_path(self, path: str, now: float) -> list[ProbeAction]:
        """End of round for a path with no probe result: a busy path that served nothing yet."""
        state = self._state[path]
        if state.in_flight is not None:
            return []  # still running; its timeout will record it
        if state.served_ok or state.served_failed:
            ok = state.served_ok > 0
            state.served_ok = state.served_failed = 0
            return self._record(Sample(path, now, ok, None, "served" if ok else "served_failed", "traffic"))
        # Busy the whole round and nothing finished: up while it is serving.
        return self._record(Sample(path, now, True, None, "serving", "traffic"))

    def _record(self, sample: Sample) -> list[ProbeAction]:
        self._state[sample.path].last = sample
        actions: list[ProbeAction] = [sample]
        rnd = self._round
        if rnd is not None and sample.path in rnd.waiting:
            rnd.waiting.discard(sample.path)
            rnd.ok[sample.path] = sample.ok
            if not rnd.waiting:
                actions.append(RoundDone(rnd.at, any(rnd.ok.values()), rnd.ok.get(PRIMARY, False)))
                self._round = None
        return actions
