"""The Piper thread rule (one session fast, many sessions fair) and the lock that applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ConfigError
from broker.settings import Env
from synth_worker.config import piper_threads_setting
from synth_worker.piper_child import BusyLock
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
    first, second, third = (BusyLock(path) for _ in range(3))
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
