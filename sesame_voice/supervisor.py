"""The supervisor's decisions, without I/O: which child to start, kill or probe, and when.

``SupervisorCore`` is fed what the adapter (``sesame_voice.children``) observes, with ``now``
passed in (it never reads a clock, never touches a process or a socket), and hands back actions:

    Spawn(name, reason)   start this child (again); ``reason`` is why (``start``, ``exited``,
                          ``hung``, ``unhealthy``, ``reload``)
    Kill(name, reason)    SIGKILL this child's process group: it is alive but hung
    Probe(name)           ask this child whether it is healthy (the gateway's ``/health``)

Children have a role: ``broker``, ``gateway`` or ``worker``. The rules:

- **Restart on exit** with jittered exponential backoff: ``initial_s`` (0.5 s) doubling to
  ``max_s`` (30 s), +-25 % jitter. A child that ran ``stable_s`` (60 s) before it exited starts
  the count again. Once the delay has reached ``max_s`` the child is in a crash loop: it is still
  restarted at that interval, and each such restart says ``crash_loop=True``.
- **A hung worker** (its process alive but no heartbeat for ``missed_heartbeats`` x the interval it
  reports, or none at all within ``start_grace_s`` of its start; ``loading_silence_s`` while it
  says it is loading or warming up its model) is killed and restarted, reason ``hung``.
  Heartbeats travel over MQTT, so while the supervisor's own MQTT link is down nobody is judged:
  when it comes back every worker gets a fresh ``reconnect_grace_s`` to be heard again.
- **A hung gateway** (``/health`` unanswered within the probe timeout ``unhealthy_after`` times in
  a row, after it has answered once or ``start_grace_s`` has passed) is killed and restarted,
  reason ``unhealthy``. It is probed every ``probe_interval_s``.
- **A configuration error is not restarted**: a child that exits with ``EXIT_CONFIG`` (78,
  sysexits' EX_CONFIG: it cannot run as configured, and would only fail again) halts the
  supervisor (``halted``: the child and its code); ``up`` then stops everything and exits with it.
- Every restart is counted by (role, reason) and kept for ``/ready``; so is every old process a
  reload had to SIGKILL because it did not exit within its bound (``retire_killed``).
- ``stop()``: nothing is restarted any more.

``next_deadline()`` says when the core next needs ``tick(now)``; the adapter sleeps until then or
until something happens. Nothing polls.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from broker.errors import EXIT_CONFIG

Role = Literal["broker", "gateway", "worker"]
ROLES: tuple[Role, ...] = ("broker", "gateway", "worker")


@dataclass(frozen=True, slots=True)
class Policy:
    initial_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.25
    stable_s: float = 60.0
    missed_heartbeats: int = 3
    start_grace_s: float = 120.0  # a Bark worker's first heartbeat, a gateway's first /health
    # Loading a model holds the GIL in bursts: a worker that says loading/warming may be late.
    loading_silence_s: float = 30.0
    reconnect_grace_s: float = 5.0  # after the supervisor's MQTT link comes back
    probe_interval_s: float = 2.0
    unhealthy_after: int = 3


@dataclass(frozen=True, slots=True)
class Spawn:
    name: str
    reason: str
    crash_loop: bool = False


@dataclass(frozen=True, slots=True)
class Kill:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Probe:
    name: str


Action = Spawn | Kill | Probe


@dataclass(slots=True)
class Child:
    name: str
    role: Role
    running: bool = False
    pid: int | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row without a stable run
    restart_at: float | None = None  # when a pending restart is due
    restart_reason: str = ""
    crash_loop: bool = False
    kill_reason: str | None = None  # set when we killed it: the exit is then for that reason
    # worker liveness
    worker_id: str | None = None
    last_heartbeat: float | None = None
    interval_s: float = 0.5
    state: str = ""
    # gateway health
    next_probe: float | None = None
    probe_failures: int = 0
    healthy_once: bool = False


@dataclass(slots=True)
class SupervisorCore:
    policy: Policy = field(default_factory=Policy)
    rng: Callable[[], float] = random.random
    children: dict[str, Child] = field(default_factory=dict)
    restarts: Counter[tuple[str, str]] = field(default_factory=Counter)
    retire_kills: Counter[str] = field(default_factory=Counter)  # role -> old processes SIGKILLed
    mqtt_up: bool = False
    stopping: bool = False
    halted: tuple[str, int] | None = None  # a child that cannot run as configured, and its code

    # --- set-up ----------------------------------------------------------------------------------

    def add(self, name: str, role: Role, reason: str = "start") -> list[Action]:
        """A new child: start it now (``reason`` ``reload`` counts as a restart of its role)."""
        if name in self.children:
            raise ValueError(f"child {name!r} already exists")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.children[name] = Child(name, role)
        if reason != "start":
            self.restarts[(role, reason)] += 1
        return [Spawn(name, reason)]

    def restart_in(self, name: str, now: float) -> float | None:
        """Seconds until the pending restart of ``name``, or None."""
        child = self.children.get(name)
        return None if child is None or child.restart_at is None else max(0.0, child.restart_at - now)

    def remove(self, name: str) -> None:
        """Forget a child (a drained worker replaced by a reload): its exit restarts nothing."""
        self.children.pop(name, None)

    def stop(self) -> None:
        self.stopping = True

    def retire_killed(self, role: Role) -> None:
        """A retired (drained) process did not exit within its bound and was SIGKILLed."""
        self.retire_kills[role] += 1

    # --- observations ----------------------------------------------------------------------------

    def started(self, name: str, pid: int, now: float, worker_id: str | None = None) -> None:
        child = self.children[name]
        child.running, child.pid, child.started_at = True, pid, now
        child.restart_at, child.kill_reason = None, None
        child.worker_id, child.last_heartbeat, child.state = worker_id, None, ""
        child.probe_failures, child.healthy_once = 0, False
        child.next_probe = now + self.policy.probe_interval_s if child.role == "gateway" else None

    def spawn_failed(self, name: str, now: float) -> list[Action]:
        """The process could not even be started: the same as an exit."""
        return self._schedule_restart(self.children[name], now, "spawn_failed")

    def exited(self, name: str, code: int | None, now: float) -> list[Action]:
        child = self.children.get(name)
        if child is None or not child.running:
            return []
        child.running, child.pid = False, None
        if code == EXIT_CONFIG and child.kill_reason is None:
            self.halted, self.stopping = (name, code), True  # it would only fail again
            return []
        reason = child.kill_reason or "exited"
        if now - child.started_at >= self.policy.stable_s:
            child.failures = 0
        return self._schedule_restart(child, now, reason)

    def heartbeat(self, worker_id: str, state: str, interval_s: float, now: float) -> None:
        for child in self.children.values():
            if child.running and child.worker_id == worker_id:
                child.last_heartbeat, child.state = now, state
                child.interval_s = max(0.01, interval_s)

    def mqtt_connected(self, now: float) -> None:
        """Heartbeats flow again: every worker has a fresh grace to be heard."""
        self.mqtt_up = True
        for child in self.children.values():
            if child.role == "worker" and child.running and child.last_heartbeat is not None:
                child.last_heartbeat = max(
                    child.last_heartbeat, now + self.policy.reconnect_grace_s - self._silence_limit(child)
                )

    def mqtt_disconnected(self) -> None:
        self.mqtt_up = False

    def probe_result(self, name: str, ok: bool, now: float) -> list[Action]:
        child = self.children.get(name)
        if child is None or not child.running:
            return []
        child.next_probe = now + self.policy.probe_interval_s
        if ok:
            child.probe_failures, child.healthy_once = 0, True
            return []
        child.probe_failures += 1
        grace_over = now - child.started_at >= self.policy.start_grace_s
        if child.probe_failures >= self.policy.unhealthy_after and (child.healthy_once or grace_over):
            return self._kill(child, "unhealthy")
        return []

    # --- time ------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for child in list(self.children.values()):
            if not child.running:
                if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                    child.restart_at = None
                    actions.append(Spawn(child.name, child.restart_reason, child.crash_loop))
                    self.restarts[(child.role, child.restart_reason)] += 1
                continue
            if child.kill_reason is not None or self.stopping:
                continue
            if child.role == "worker" and self.mqtt_up and now >= self._hang_deadline(child):
                actions += self._kill(child, "hung")
            elif child.role == "gateway" and child.next_probe is not None and now >= child.next_probe:
                child.next_probe = None  # the answer (probe_result) schedules the next one
                actions.append(Probe(child.name))
        return actions

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for child in self.children.values():
            if not child.running:
                if child.restart_at is not None and not self.stopping:
                    deadlines.append(child.restart_at)
            elif child.kill_reason is None and not self.stopping:
                if child.role == "worker" and self.mqtt_up:
                    deadlines.append(self._hang_deadline(child))
                elif child.role == "gateway" and child.next_probe is not None:
                    deadlines.append(child.next_probe)
        return min(deadlines, default=None)

    # --- reporting -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """What ``/ready`` shows: restarts by role and reason, and each child's state."""
        return {
            "restarts": [
                {"role": role, "reason": reason, "count": n}
                for (role, reason), n in sorted(self.restarts.items())
            ],
            "restarts_total": sum(self.restarts.values()),
            "retire_kills": dict(sorted(self.retire_kills.items())),
            "children": [
                {
                    "name": c.name,
                    "role": c.role,
                    "running": c.running,
                    "pid": c.pid,
                    "worker_id": c.worker_id,
                    "crash_loop": c.crash_loop,
                }
                for c in self.children.values()
            ],
        }

    # --- internals -------------------------------------------------------------------------------

    def _silence_limit(self, child: Child) -> float:
        limit = self.policy.missed_heartbeats * child.interval_s
        if child.state in ("loading", "warming"):
            return max(limit, self.policy.loading_silence_s)
        return limit

    def _hang_deadline(self, child: Child) -> float:
        if child.last_heartbeat is None:
            return child.started_at + self.policy.start_grace_s
        return child.last_heartbeat + self._silence_limit(child)

    def _kill(self, child: Child, reason: str) -> list[Action]:
        child.kill_reason = reason
        return [Kill(child.name, reason)]

    def _schedule_restart(self, child: Child, now: float, reason: str) -> list[Action]:
        if self.stopping:
            return []
        p = self.policy
        cap = min(p.max_s, p.initial_s * 2.0**child.failures)
        delay = cap * (1.0 + p.jitter * (2.0 * self.rng() - 1.0))
        child.crash_loop = cap >= p.max_s
        child.failures += 1
        child.restart_at = now + min(p.max_s, max(p.initial_s, delay))
        child.restart_reason = reason
        return []
