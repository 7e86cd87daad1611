"""The Piper thread rule (one session fast, many sessions fair) and the lock that applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ConfigError
from broker.settings import Env
from synth_worker.config import piper_threads_setting
from synth_worker.piper_child import BusyLock, machine_free, others_running
from synth_worker.piper_threads import PiperThreads, machine_cores, one_core_workers, piper_threads


@pytest.mark.parametrize(
    ("cores", "workers", "alone", "shared"),
    [
        (1, 1, 1, 1),  # one core: nothing to choose
        (2, 2, 2, 1),  # up's default on 2 cores: 2 workers
        (8, 8, 8, 1),
        (32, 16, 32, 2),  # up starts at most 16 workers; each gets two cores when all speak
        (8, 2, 8, 4),  # SESAME_WORKERS=2 on 8 cores
        (4, 8, 4, 1),  # more workers than cores: never below one thread
        (0, 0, 1, 1),
    ],
)
def test_alone_every_core_beside_others_the_cores_divided_among_the_workers(
    cores: int, workers: int, alone: int, shared: int
) -> None:
    assert piper_threads(cores, workers) == PiperThreads(alone, shared)


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 2), (8, 8), (16, 16), (32, 16), (128, 16)])
def test_up_starts_one_worker_per_core_at_most_16(cores: int, workers: int) -> None:
    assert one_core_workers(cores) == workers


def test_the_setting_fixes_the_threads_or_follows_the_machine_and_its_workers() -> None:
    cores = machine_cores()
    assert piper_threads_setting(Env({"SESAME_PIPER_THREADS": "3"})) == PiperThreads(3, 3)
    assert not PiperThreads.fixed(3).adaptive
    default = piper_threads(cores, one_core_workers(cores))
    assert piper_threads_setting(Env({})) == default
    auto = {"SESAME_PIPER_THREADS": "auto", "SESAME_WORKERS": "1"}
    assert piper_threads_setting(Env(auto)) == PiperThreads(cores, cores)  # one worker: always all
    assert piper_threads_setting(Env({"MAX_WORKERS": "auto"})) == default
    with pytest.raises(ConfigError, match="SESAME_PIPER_THREADS"):
        piper_threads_setting(Env({"SESAME_PIPER_THREADS": "many"}))
    with pytest.raises(ConfigError, match="SESAME_WORKERS"):
        piper_threads_setting(Env({"SESAME_WORKERS": "-2"}))


def test_the_busy_lock_tells_a_child_whether_another_one_is_speaking(tmp_path: Path) -> None:
    path = str(tmp_path / "busy")
    first, second, third = (BusyLock(path, free=lambda: True) for _ in range(3))
    assert first.speak(), "nobody else speaks"
    assert first.speak(), "asking again between clauses: still alone"
    assert not second.speak(), "the first one is speaking"
    assert not first.speak(), "and now the first sees the second"
    assert not third.speak()
    first.quiet()
    second.quiet()
    assert third.speak(), "the others are done"
    third.quiet()
    assert first.speak()
    first.quiet()


def test_on_a_machine_busy_with_other_work_a_lone_child_keeps_to_its_share(tmp_path: Path) -> None:
    lock = BusyLock(str(tmp_path / "busy"), free=lambda: False)
    assert not lock.speak(), "no other Piper child speaks, but other work keeps the cores busy"
    lock.quiet()


@pytest.mark.parametrize(
    ("loadavg", "others"),
    [
        ("0.73 1.15 1.97 1/345 12345\n", 0),  # only the reader runs
        ("14.3 12.0 9.1 12/980 4242\n", 11),
        ("0.00 0.00 0.00 0/12 1\n", 0),
    ],
)
def test_other_runnable_threads_are_read_from_loadavg(loadavg: str, others: int) -> None:
    assert others_running(loadavg) == others


@pytest.mark.parametrize(
    ("cores", "others", "free"),
    [
        (2, 0, True),
        (2, 1, True),  # the gateway or the broker waking for a moment
        (2, 2, False),
        (2, 11, False),  # a machine shared with other work: one thread per clause
        (32, 16, True),
        (32, 17, False),
    ],
)
def test_every_core_only_while_at_most_half_of_them_run_other_work(
    cores: int, others: int, free: bool
) -> None:
    assert machine_free(cores, others) is free
