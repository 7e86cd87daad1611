"""A reload's surge: how many workers it replaces at once, and the order it keeps.

The rule (``capacity.reload_surge``) table by table; the host's memory as ``up`` reads it; and the
order of a reload's steps (``Stack.reload``) with a stand-in for the supervisor that records when
each successor starts and each old worker is gone: with surge 1 each step begins after the last
one's old worker is gone (the order before), with surge 2 both successors start at once; either
way no old worker goes before its own successor is ready, and a successor that is not ready stops
the slots not yet begun. The real processes' order is checked by
``test_reload_piper_under_load.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from broker.errors import ConfigError
from broker.settings import Env
from sesame_voice import host_memory
from sesame_voice.capacity import reload_surge, surge_setting
from sesame_voice.child_process import ChildSpec
from sesame_voice.children import Replaced, Supervisor
from sesame_voice.reload_report import ReloadReport
from sesame_voice.stack import Stack, StackConfig
from sesame_voice.up import UpConfig
from tests.conftest import T

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("case", "surge"),
    [
        ((None, "piper", 2, 4000 * MB, 120 * MB), 2),  # auto: every Piper worker at once
        ((None, "piper", 16, 4000 * MB, 120 * MB), 16),
        ((None, "piper", 16, 1000 * MB, 120 * MB), 4),  # as many as half the memory holds
        ((None, "piper", 2, 100 * MB, 120 * MB), 1),  # never fewer than one
        ((None, "espeak-ng", 4, 4000 * MB, 30 * MB), 4),
        ((None, "bark", 2, 64000 * MB, 500 * MB), 1),  # Bark: one extra model at a time
        ((None, "piper", 2, None, 120 * MB), 1),  # memory unknown: one at a time
        ((None, "piper", 2, 4000 * MB, None), 1),
        ((1, "piper", 2, 4000 * MB, 120 * MB), 1),  # the setting wins
        ((3, "bark", 2, None, None), 2),  # but never more than the workers
    ],
)
def test_reload_surge(case: tuple[int | None, str, int, int | None, int | None], surge: int) -> None:
    """(setting, engine, workers, bytes available, bytes of the largest worker) -> surge"""
    assert reload_surge(*case) == surge


@pytest.mark.parametrize(
    ("raw", "setting"), [(None, None), ("auto", None), ("AUTO", None), ("1", 1), ("4", 4)]
)
def test_the_surge_setting(raw: str | None, setting: int | None) -> None:
    env = {} if raw is None else {"SESAME_RELOAD_SURGE": raw}
    assert surge_setting(Env(env)) == setting
    assert UpConfig.from_env(env, None, None).reload_surge == setting


@pytest.mark.parametrize("raw", ["0", "many", "-1"])
def test_a_bad_surge_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="SESAME_RELOAD_SURGE"):
        UpConfig.from_env({"SESAME_RELOAD_SURGE": raw}, None, None)


def test_the_hosts_memory_as_up_reads_it() -> None:
    available = host_memory.available_bytes()
    mine = host_memory.tree_rss_bytes(os.getpid())
    assert available is not None and available > 0
    assert mine is not None and mine > 10 * MB  # this interpreter, with pytest loaded
    assert host_memory.tree_rss_bytes(2**22 + 1) is None  # above pid_max: no such process


class StandIn:
    """The supervisor as the stack sees it: ``replace`` records when each successor starts, is
    ready and its predecessor is gone; each step waits for the test to let it end."""

    def __init__(self, not_ready: frozenset[str] = frozenset()) -> None:
        self.procs: dict[str, SimpleNamespace] = {}
        self.stop_timeout_s = 40.0
        self.events: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.started = asyncio.Condition()
        self.not_ready = not_ready

    async def replace(self, old: str, new: ChildSpec, ready_timeout_s: float) -> Replaced:
        if new.role == "gateway":
            return "exited"
        release = self.release.setdefault(new.name, asyncio.Event())
        async with self.started:
            self.events.append(f"start {new.name}")
            self.started.notify_all()
        await release.wait()
        if new.name in self.not_ready:
            self.events.append(f"not_ready {new.name}")
            return "not_ready"
        self.events.append(f"ready {new.name}")
        self.procs.pop(old, None)
        self.procs[new.name] = SimpleNamespace(pid=os.getpid())
        self.events.append(f"gone {old}")
        return "exited"

    async def wait_started(self, n: int) -> None:
        async with self.started, asyncio.timeout(T):
            await self.started.wait_for(lambda: sum(e.startswith("start") for e in self.events) >= n)


def stack(tmp_path: Path, sup: StandIn, surge: int, workers: int = 2) -> Stack:
    config = StackConfig("127.0.0.1", 0, workers, 10 * T, "piper", surge)
    made = Stack(config, {}, cast(Supervisor, sup), ReloadReport(tmp_path / "reload.json"), None)
    made.listener.close()  # the gateway's socket: no gateway is started here
    for slot in range(1, workers + 1):
        made.slots[slot] = (f"worker-{slot}", 0)
        sup.procs[f"worker-{slot}"] = SimpleNamespace(pid=os.getpid())
    return made


async def test_surge_one_replaces_the_workers_one_after_another(tmp_path: Path) -> None:
    sup = StandIn()
    reload = asyncio.create_task(stack(tmp_path, sup, surge=1).reload())
    await sup.wait_started(1)
    assert sup.events == ["start worker-1-r1"]  # the second waits for the first step to end
    sup.release["worker-1-r1"].set()
    await sup.wait_started(2)
    sup.release["worker-2-r1"].set()
    async with asyncio.timeout(T):
        await reload
    assert sup.events == [
        "start worker-1-r1",
        "ready worker-1-r1",
        "gone worker-1",
        "start worker-2-r1",
        "ready worker-2-r1",
        "gone worker-2",
    ]


async def test_surge_two_starts_both_successors_at_once(tmp_path: Path) -> None:
    sup = StandIn()
    made = stack(tmp_path, sup, surge=2)
    reload = asyncio.create_task(made.reload())
    await sup.wait_started(2)
    assert sup.events == ["start worker-1-r1", "start worker-2-r1"]  # neither old one gone yet
    sup.release["worker-2-r1"].set()  # the second successor ready first: its own old one goes
    sup.release["worker-1-r1"].set()
    async with asyncio.timeout(T):
        await reload
    for slot in (1, 2):  # no old worker went before its own successor was ready
        assert sup.events.index(f"ready worker-{slot}-r1") < sup.events.index(f"gone worker-{slot}")
    assert made.slots == {1: ("worker-1-r1", 1), 2: ("worker-2-r1", 1)}
    report = (tmp_path / "reload.json").read_text()
    assert "2 worker(s), 2 at a time" in report
    assert '"ok": true' in report


async def test_a_successor_not_ready_stops_the_slots_not_begun(tmp_path: Path) -> None:
    sup = StandIn(not_ready=frozenset({"worker-1-r1"}))
    made = stack(tmp_path, sup, surge=2, workers=3)
    reload = asyncio.create_task(made.reload())
    await sup.wait_started(2)
    sup.release["worker-1-r1"].set()  # not ready: slot 3 never begins
    sup.release["worker-2-r1"].set()  # already begun: it finishes
    async with asyncio.timeout(T):
        await reload
    assert "start worker-3-r1" not in sup.events
    assert made.slots == {1: ("worker-1", 0), 2: ("worker-2-r1", 1), 3: ("worker-3", 0)}
    assert '"ok": false' in (tmp_path / "reload.json").read_text()
