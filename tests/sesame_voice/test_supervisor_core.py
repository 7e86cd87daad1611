"""The supervisor's pure core: restart backoff, crash loops, hang detection, probes. No I/O, no sleep."""

from __future__ import annotations

import pytest

from broker.errors import EXIT_CONFIG
from sesame_voice.supervisor import Kill, Policy, Probe, Spawn, SupervisorCore


def core(rng: float = 0.5, **policy: float) -> SupervisorCore:
    return SupervisorCore(Policy(**policy), rng=lambda: rng)  # type: ignore[arg-type]


def run_until_spawn(c: SupervisorCore, name: str) -> float:
    """Tick at the core's own deadline until it asks to spawn ``name``; returns when."""
    for _ in range(10):
        when = c.next_deadline()
        assert when is not None
        if any(isinstance(a, Spawn) and a.name == name for a in c.tick(when)):
            return when
    raise AssertionError("no spawn")


def test_add_spawns_at_once() -> None:
    c = core()
    assert c.add("w1", "worker") == [Spawn("w1", "start")]
    with pytest.raises(ValueError, match="already exists"):
        c.add("w1", "worker")
    with pytest.raises(ValueError, match="unknown role"):
        c.add("x", "nonsense")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rng", "delays"),
    [
        (0.5, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]),  # no jitter
        (0.0, [0.5, 0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5, 22.5]),  # -25 %, never under 0.5
        (1.0, [0.625, 1.25, 2.5, 5.0, 10.0, 20.0, 30.0, 30.0, 30.0]),  # +25 %, never over 30
    ],
)
def test_backoff_doubles_to_the_cap_with_jitter(rng: float, delays: list[float]) -> None:
    c = core(rng)
    c.add("w", "worker")
    now = 0.0
    c.started("w", 1, now)
    for expected in delays:
        now += 1.0  # each run lasts 1 s: never stable
        assert c.exited("w", 1, now) == []
        assert c.restart_in("w", now) == pytest.approx(expected)
        assert c.next_deadline() == pytest.approx(now + expected)
        assert c.tick(now + expected - 0.01) == []
        now = run_until_spawn(c, "w")
        c.started("w", 2, now)


def test_crash_loop_is_said_and_keeps_trying() -> None:
    c = core()
    c.add("g", "gateway")
    now = 0.0
    loops = []
    for _ in range(9):
        c.started("g", 1, now)
        c.exited("g", 1, now + 0.1)
        now = c.next_deadline() or 0.0
        spawn = [a for a in c.tick(now) if isinstance(a, Spawn)]
        assert len(spawn) == 1
        loops.append(spawn[0].crash_loop)
    assert loops == [False] * 6 + [True] * 3
    assert c.restarts[("gateway", "exited")] == 9


def test_a_stable_run_resets_the_backoff() -> None:
    c = core()
    c.add("w", "worker")
    c.started("w", 1, 0.0)
    for i in range(5):
        c.exited("w", 1, 1.0 + i)
        run_until_spawn(c, "w")
        c.started("w", 1, 1.0 + i)
    c.exited("w", 1, 200.0)  # up 195 s: stable
    assert c.restart_in("w", 200.0) == pytest.approx(0.5)


def test_stable_run_boundary_is_the_policy_minute() -> None:
    for uptime, expected in [(59.9, 1.0), (60.0, 0.5)]:
        c = core()
        c.add("w", "worker")
        c.started("w", 1, 0.0)
        c.exited("w", 1, 1.0)
        t = run_until_spawn(c, "w")
        c.started("w", 1, t)
        c.exited("w", 1, t + uptime)
        assert c.restart_in("w", t + uptime) == pytest.approx(expected)


def test_a_silent_worker_is_killed_then_restarted_as_hung() -> None:
    c = core()
    c.add("w", "worker")
    c.started("w", 10, 0.0, worker_id="worker-1")
    c.mqtt_connected(0.0)
    c.heartbeat("worker-1", "ready", 0.5, 1.0)
    assert c.next_deadline() == pytest.approx(2.5)  # 3 x 0.5 s after the last beat
    c.heartbeat("worker-1", "ready", 0.5, 2.0)
    assert c.tick(2.4) == []
    assert c.tick(3.5) == [Kill("w", "hung")]
    assert c.tick(3.6) == []  # one kill, not one per tick
    assert c.next_deadline() is None
    c.exited("w", -9, 3.7)
    assert run_until_spawn(c, "w") == pytest.approx(4.2)
    assert c.restarts[("worker", "hung")] == 1
    assert c.snapshot()["restarts"] == [{"role": "worker", "reason": "hung", "count": 1}]


def test_heartbeats_of_other_workers_do_not_count() -> None:
    c = core()
    c.add("w", "worker")
    c.started("w", 10, 0.0, worker_id="worker-1")
    c.mqtt_connected(0.0)
    c.heartbeat("worker-1", "ready", 0.5, 1.0)
    c.heartbeat("worker-2", "ready", 0.5, 5.0)
    assert c.tick(5.0) == [Kill("w", "hung")]


def test_a_worker_that_never_beats_is_hung_after_the_start_grace() -> None:
    c = core(start_grace_s=60.0)
    c.add("w", "worker")
    c.started("w", 10, 0.0, worker_id="worker-1")
    c.mqtt_connected(0.0)
    assert c.tick(59.0) == []
    assert c.tick(60.0) == [Kill("w", "hung")]


def test_nobody_is_judged_while_the_supervisor_cannot_hear_heartbeats() -> None:
    c = core(reconnect_grace_s=5.0)
    c.add("w", "worker")
    c.started("w", 10, 0.0, worker_id="worker-1")
    c.mqtt_connected(0.0)
    c.heartbeat("worker-1", "ready", 0.5, 1.0)
    c.mqtt_disconnected()  # the broker is down: silence is not the worker's fault
    assert c.next_deadline() is None
    assert c.tick(30.0) == []
    c.mqtt_connected(30.0)
    assert c.next_deadline() == pytest.approx(35.0)
    assert c.tick(34.0) == []
    c.heartbeat("worker-1", "ready", 0.5, 34.5)  # it reconnected and beats again
    assert c.tick(35.5) == []
    assert c.tick(36.1) == [Kill("w", "hung")]


def test_the_worker_reported_interval_sets_the_silence_limit() -> None:
    c = core(missed_heartbeats=4)
    c.add("w", "worker")
    c.started("w", 1, 0.0, worker_id="w1")
    c.mqtt_connected(0.0)
    c.heartbeat("w1", "ready", 2.0, 1.0)
    assert c.next_deadline() == pytest.approx(9.0)


def test_gateway_probes_and_unhealthy_kill() -> None:
    c = core(probe_interval_s=2.0, unhealthy_after=3)
    c.add("gw", "gateway")
    c.started("gw", 5, 0.0)
    assert c.next_deadline() == pytest.approx(2.0)
    assert c.tick(2.0) == [Probe("gw")]
    assert c.next_deadline() is None  # waiting for the answer, not probing twice
    assert c.probe_result("gw", True, 2.1) == []
    now = 2.1
    kills = []
    for _ in range(3):
        assert c.next_deadline() == pytest.approx(now + 2.0)
        now += 2.0
        assert c.tick(now) == [Probe("gw")]
        now += 1.0  # the probe timed out
        kills = c.probe_result("gw", False, now)
    assert kills == [Kill("gw", "unhealthy")]
    c.exited("gw", -9, now + 0.1)
    run_until_spawn(c, "gw")
    assert c.restarts[("gateway", "unhealthy")] == 1


def test_one_good_probe_resets_the_failures() -> None:
    c = core(unhealthy_after=2)
    c.add("gw", "gateway")
    c.started("gw", 5, 0.0)
    c.probe_result("gw", True, 1.0)
    assert c.probe_result("gw", False, 2.0) == []
    assert c.probe_result("gw", True, 3.0) == []
    assert c.probe_result("gw", False, 4.0) == []
    assert c.probe_result("gw", False, 5.0) == [Kill("gw", "unhealthy")]


def test_a_starting_gateway_is_not_killed_before_its_grace() -> None:
    c = core(unhealthy_after=2, start_grace_s=30.0)
    c.add("gw", "gateway")
    c.started("gw", 5, 0.0)
    assert c.probe_result("gw", False, 2.0) == []
    assert c.probe_result("gw", False, 4.0) == []
    assert c.probe_result("gw", False, 31.0) == [Kill("gw", "unhealthy")]


def test_stop_restarts_nothing() -> None:
    c = core()
    c.add("w", "worker")
    c.add("b", "broker")
    c.started("w", 1, 0.0, worker_id="w1")
    c.started("b", 2, 0.0)
    c.exited("b", 1, 1.0)
    c.stop()
    assert c.next_deadline() is None
    assert c.exited("w", 0, 2.0) == []
    assert c.tick(100.0) == []


def test_removed_and_unknown_children_are_ignored() -> None:
    c = core()
    c.add("w", "worker")
    c.started("w", 1, 0.0)
    c.remove("w")
    assert c.exited("w", 0, 1.0) == []
    assert c.probe_result("nobody", False, 1.0) == []
    assert c.tick(10.0) == []


def test_reload_counts_as_a_restart_of_its_role() -> None:
    c = core()
    assert c.add("w-2", "worker", reason="reload") == [Spawn("w-2", "reload")]
    assert c.snapshot()["restarts_total"] == 1


def test_many_random_schedules_never_restart_faster_than_initial_or_slower_than_max() -> None:
    import random

    r = random.Random(7)
    c = SupervisorCore(Policy(), rng=r.random)
    c.add("w", "worker")
    now = 0.0
    for _ in range(2000):
        c.started("w", 1, now)
        now += r.choice([0.1, 5.0, 61.0])
        c.exited("w", 1, now)
        delay = c.restart_in("w", now)
        assert delay is not None
        assert 0.5 <= delay <= 30.0
        now = run_until_spawn(c, "w")


def test_a_loading_worker_may_be_late_but_not_forever() -> None:
    c = core(loading_silence_s=30.0)
    c.add("w", "worker")
    c.started("w", 1, 0.0, worker_id="w1")
    c.mqtt_connected(0.0)
    c.heartbeat("w1", "loading", 0.5, 1.0)
    assert c.tick(10.0) == []  # loading torch holds the GIL: beats come late
    c.heartbeat("w1", "ready", 0.5, 12.0)
    assert c.next_deadline() == pytest.approx(13.5)
    c.heartbeat("w1", "warming", 0.5, 13.0)
    assert c.tick(42.9) == []
    assert c.tick(43.0) == [Kill("w", "hung")]


@pytest.mark.parametrize("role", ["gateway", "worker"])
def test_a_configuration_error_exit_halts_instead_of_restarting(role: str) -> None:
    """Exit 78 (EX_CONFIG): the child would only fail again. Nothing is restarted, no deadline is
    left, and ``halted`` names it; an ordinary exit is still restarted."""
    c = core()
    c.add("w1", "worker")
    c.started("w1", 10, 0.0, worker_id="w1")
    c.add("child", role)  # type: ignore[arg-type]
    c.started("child", 11, 0.0, worker_id="w2" if role == "worker" else None)
    assert c.exited("child", EXIT_CONFIG, 1.0) == []
    assert c.halted == ("child", EXIT_CONFIG) and c.stopping
    assert c.restart_in("child", 1.0) is None and c.next_deadline() is None
    assert c.tick(100.0) == [] and not c.restarts


def test_an_ordinary_exit_code_is_restarted_not_halted() -> None:
    c = core()
    c.add("gw", "gateway")
    c.started("gw", 11, 0.0)
    c.exited("gw", 2, 1.0)
    assert c.halted is None and c.restart_in("gw", 1.0) == 0.5
