"""The probe core: rounds, busy paths, preemption, timeouts. Synchronous, no clock."""

from __future__ import annotations

import pytest

from stream_server.monitoring.probes import PRIMARY, CancelProbe, ProbeCore, RoundDone, Sample, StartProbe

PATHS = (PRIMARY, "espeak-ng")


def core() -> ProbeCore:
    c = ProbeCore(PATHS, interval_s=10.0, timeout_s=4.0)
    c.start(100.0)
    return c


def starts(actions: list[object]) -> dict[str, str]:
    return {a.path: a.probe_id for a in actions if isinstance(a, StartProbe)}


def test_a_round_probes_every_path_and_ends_with_round_done() -> None:
    c = core()
    assert c.next_deadline() == 100.0
    probes = starts(c.handle_timer(100.0))
    assert set(probes) == set(PATHS)
    first = c.probe_result(probes[PRIMARY], True, 0.8, "probe_ok", 101.0)
    assert first == [Sample(PRIMARY, 101.0, True, 0.8, "probe_ok", "probe")]
    last = c.probe_result(probes["espeak-ng"], False, None, "engine_error", 101.5)
    assert last[0] == Sample("espeak-ng", 101.5, False, None, "engine_error", "probe")
    assert last[1] == RoundDone(100.0, any_ok=True, primary_ok=True)
    assert c.next_deadline() == 110.0


def test_a_probe_that_never_answers_times_out_as_failed() -> None:
    c = core()
    probes = starts(c.handle_timer(100.0))
    assert c.next_deadline() == 104.0
    out = c.handle_timer(104.0)
    samples = [a for a in out if isinstance(a, Sample)]
    assert {s.path for s in samples} == set(PATHS)
    assert all(not s.ok and s.reason == "probe_timeout" for s in samples)
    cancels = {a.path: a.probe_id for a in out if isinstance(a, CancelProbe)}
    assert cancels == probes  # the runner stops what it runs: it has no timer of its own
    assert RoundDone(100.0, any_ok=False, primary_ok=False) in out
    # the late answer changes nothing
    assert c.probe_result(probes[PRIMARY], True, 5.0, "probe_ok", 105.0) == []


def test_a_path_that_served_listeners_is_sampled_from_traffic_not_probed() -> None:
    c = core()
    c.traffic(PRIMARY, True, 99.0)
    out = c.handle_timer(100.0)
    assert set(starts(out)) == {"espeak-ng"}
    assert Sample(PRIMARY, 100.0, True, None, "served", "traffic") in out


def test_traffic_that_only_failed_counts_as_down() -> None:
    c = core()
    c.traffic(PRIMARY, False, 99.0)
    out = c.handle_timer(100.0)
    assert Sample(PRIMARY, 100.0, False, None, "served_failed", "traffic") in out


def test_a_busy_path_is_not_probed_and_its_traffic_closes_the_round() -> None:
    c = core()
    c.busy(PRIMARY, True)
    out = c.handle_timer(100.0)
    assert set(starts(out)) == {"espeak-ng"}
    done = c.traffic(PRIMARY, True, 102.0)
    assert done == [Sample(PRIMARY, 102.0, True, None, "served", "traffic")]


def test_busy_for_a_whole_round_counts_as_up_while_serving() -> None:
    c = core()
    c.busy(PRIMARY, True)
    c.handle_timer(100.0)
    out = c.handle_timer(110.0)
    assert Sample(PRIMARY, 110.0, True, None, "serving", "traffic") in out


def test_a_listener_preempts_the_primary_probe() -> None:
    c = core()
    probes = starts(c.handle_timer(100.0))
    assert c.preempt(PRIMARY, 100.5) == [CancelProbe(probes[PRIMARY], PRIMARY)]
    assert c.preempt(PRIMARY, 100.6) == []
    assert c.probe_result(probes[PRIMARY], True, 0.5, "probe_ok", 101.0) == []
    assert c.traffic(PRIMARY, True, 101.0) == [Sample(PRIMARY, 101.0, True, None, "served", "traffic")]


def test_a_slow_probe_is_not_started_twice() -> None:
    c = ProbeCore(PATHS, interval_s=10.0, timeout_s=30.0)  # timeout is capped at the interval
    c.start(0.0)
    first = starts(c.handle_timer(0.0))
    assert c.next_deadline() == 10.0
    out = c.handle_timer(10.0)
    assert {s.path for s in out if isinstance(s, Sample)} == set(PATHS)  # timed out at the cap
    assert set(starts(out)) == set(PATHS)
    assert starts(out) != first


def test_unknown_paths_are_ignored() -> None:
    c = core()
    assert c.traffic("nope", True, 1.0) == []
    assert c.preempt("nope", 1.0) == []
    c.busy("nope", True)


@pytest.mark.parametrize(("paths", "interval"), [((), 1.0), ((PRIMARY, PRIMARY), 1.0), (PATHS, 0.0)])
def test_bad_configuration_is_refused(paths: tuple[str, ...], interval: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        ProbeCore(paths, interval_s=interval, timeout_s=1.0)
