"""No child of ``sesame-voice up`` outlives it: ``kill -9`` of up, Ctrl-C twice, SIGTERM during start.

Each test starts its own ``up`` (broker, one espeak-ng worker, gateway: the quickest real stack)
and, whatever way it ends, checks that every process it started is gone: the mosquitto too, which
drops to its own user when started by root and so loses PR_SET_PDEATHSIG (the reaper, watching a
pipe from up, kills it).
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from websockets.asyncio.client import connect

from broker.launcher import free_port
from tests.conftest import T
from tests.support.localstack import Event, Proc
from tests.support.procfs import STATE, children_of, stat_fields


def _up(tmp: Path) -> Proc:
    env = {
        "SESAME_PORT": str(free_port()),
        "SESAME_RUN_DIR": str(tmp),
        "SESAME_ENGINE": "espeak-ng",
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_MQTT_URL": "",
    }
    return Proc(["up", "--workers", "1"], env, "up")


def _started(proc: Proc) -> dict[str, int]:
    """Child name -> pid, from up's own log lines."""
    return {
        str(e["child"]): int(e["pid"])  # type: ignore[call-overload]
        for e in proc.events()
        if e.get("event") in ("child_started", "child_restarted")
    }


def _alive(pid: int) -> bool:
    try:
        state = stat_fields(Path(f"/proc/{pid}/stat"))[STATE]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited (init reaps it when it gets to it)


def _wait_gone(pids: dict[str, int], timeout: float) -> dict[str, int]:
    """The processes still alive once all are gone or ``timeout`` passed (a deadline, not a sleep
    in place of an event: a process's death has no event a test outside its parent can wait on)."""
    deadline = time.monotonic() + timeout
    while (alive := {n: p for n, p in pids.items() if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _their_children(pids: dict[str, int]) -> dict[str, int]:
    """The processes whose parent is one of ``pids`` (espeak-ng's, in sessions of their own)."""
    names = {pid: name for name, pid in pids.items()}
    return {f"{names[parent]}/{pid}": pid for pid, parent in children_of(names).items()}


def _ready(proc: Proc) -> None:
    proc.wait_event("gateway_listening", 12 * T)
    proc.wait_for(lambda e: e.get("event") == "worker_ready", 12 * T, "worker ready")


def _reaper_pid(up_pid: int) -> int:
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if b"sesame_voice.reaper" in cmd and int((entry / "stat").read_text().split()[3]) == up_pid:
                return int(entry.name)
    raise AssertionError("no reaper process")


def test_kill_9_of_up_leaves_no_child_behind_not_even_the_broker(tmp_path: Path) -> None:
    up = _up(tmp_path)
    try:
        _ready(up)
        children = _started(up)
        assert {"broker", "worker-1", "gateway"} <= set(children)
        children["reaper"] = _reaper_pid(up.pid)
        # espeak-ng runs in a session of its own (below the hops, synth_worker/child_priority.py):
        # no process group signal reaches it; it ends when its parent's pipe to it closes.
        helpers = _their_children({"worker": children["worker-1"], "gateway": children["gateway"]})
        assert any(name.startswith("worker/") for name in helpers)  # the worker's espeak-ng, waiting
        up.signal(signal.SIGKILL)
        assert up.proc.wait(3 * T) == -signal.SIGKILL
        assert _wait_gone({**children, **helpers}, 6 * T) == {}
    finally:
        up.stop(5)


async def test_a_second_ctrl_c_hurries_the_stop_and_still_stops_every_child(tmp_path: Path) -> None:
    up = _up(tmp_path)
    try:
        _ready(up)
        children = _started(up)
        children["reaper"] = _reaper_pid(up.pid)
        port = next(e["url"] for e in up.events() if e.get("event") == "up_started")
        # An open session keeps the gateway's drain going for its quiet time: the second Ctrl-C
        # lands while up is stopping.
        async with connect(str(port).replace("http", "ws") + "ws") as ws:
            await ws.recv()
            up.signal(signal.SIGINT)
            up.wait_event("up_stop_requested", 3 * T)
            up.signal(signal.SIGINT)
            hurried: Event = up.wait_event("up_stop_hurried", 3 * T)
            assert hurried["signal"] == "SIGINT"
        assert up.proc.wait(6 * T) == 0
        up.wait_event("up_stopped", T)
        assert _wait_gone(children, 6 * T) == {}
    finally:
        up.stop(5)


def test_sigterm_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    up = _up(tmp_path)
    try:
        broker = up.wait_for(
            lambda e: e.get("event") == "child_started" and e.get("role") == "broker", 12 * T, "broker"
        )
        up.signal(signal.SIGTERM)  # before the workers or the gateway are ready (or even started)
        assert up.proc.wait(12 * T) == 0
        up.wait_event("up_stopped", T)
        children = _started(up)
        assert children["broker"] == broker["pid"]
        assert _wait_gone(children, 6 * T) == {}
        assert not any(e.get("event") == "gateway_listening" for e in up.events())
    finally:
        up.stop(5)
