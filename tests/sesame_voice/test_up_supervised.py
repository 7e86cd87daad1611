"""``sesame-voice up`` for real: its supervisor heals killed and frozen workers, reloads, stops clean.

One ``up`` (broker, one Bark worker on the dev checkpoint, gateway) is shared by the module's tests,
in order; every wait is on a JSON log line of ``up`` or its children (they share its stdout).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from broker.launcher import free_port
from tests.conftest import T
from tests.support.localstack import Event, Proc
from tests.wsclient import collect, send


class Up:
    def __init__(self, tmp: Path, model_dir: Path) -> None:
        self.port = free_port()
        self.run_dir = tmp
        env = {
            "SESAME_PORT": str(self.port),
            "SESAME_RUN_DIR": str(tmp),
            "SESAME_MODEL": str(model_dir),
            "SESAME_SEED": "1",
            "SESAME_TIERS": "workers,espeak-ng",
            "SESAME_CACHE_ENABLED": "false",
            "SESAME_RETRY_DELAY": "0",
        }
        env.pop("SESAME_MQTT_URL", None)
        self.proc = Proc(["up", "--workers", "1"], {**env, "SESAME_MQTT_URL": ""}, "up")

    def index(self) -> int:
        return len(self.proc.lines)

    def wait(self, since: int, what: str, timeout: float, **fields: object) -> Event:
        def match(e: Event) -> bool:
            return e.get("event") == what and all(e.get(k) == v for k, v in fields.items())

        return self.proc.wait_for(match, timeout, f"{what} {fields}", since=since)

    def worker_pid(self, since: int = 0) -> int:
        started = [
            e
            for e in self.proc.events()[since:]
            if e.get("event") in ("child_started", "child_restarted") and e.get("role") == "worker"
        ]
        return int(started[-1]["pid"])  # type: ignore[call-overload]

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.run_dir / f"supervisor-{self.port}.json").read_text())
        return data

    async def speak_engine(self, text: str) -> list[str]:
        async with connect(f"ws://127.0.0.1:{self.port}/ws") as ws:
            await ws.recv()
            await send(ws, type="speak", text=text)
            turn = await collect(ws, 12 * T)
        return [str(s["engine"]) for s in turn.of("sentence_start")]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, dev_model_dir: Path) -> Iterator[Up]:
    u = Up(tmp_path_factory.mktemp("run"), dev_model_dir)
    try:
        u.wait(0, "gateway_listening", 12 * T)
        u.wait(0, "worker_change", 12 * T, worker_id="worker-1", up=True)
        yield u
    finally:
        u.proc.stop(20)


async def test_kill_9_a_worker_comes_back_ready_and_bark_speaks_the_next_turn(up: Up) -> None:
    assert await up.speak_engine("Before the crash.") == ["bark"]
    pid = up.worker_pid()
    mark = up.index()
    os.kill(pid, signal.SIGKILL)
    exited = up.wait(mark, "child_exited", 3 * T, child="worker-1")
    assert exited["code"] == -signal.SIGKILL
    restarted = up.wait(mark, "child_restarted", 3 * T, child="worker-1", reason="exited")
    assert restarted["pid"] != pid
    up.wait(mark, "worker_change", 12 * T, worker_id="worker-1", up=True)
    assert await up.speak_engine("After the crash.") == ["bark"]
    assert {"role": "worker", "reason": "exited", "count": 1} in up.state()["restarts"]  # type: ignore[operator]


async def test_sigstop_a_worker_is_killed_as_hung_and_replaced(up: Up) -> None:
    pid = up.worker_pid()
    mark = up.index()
    os.kill(pid, signal.SIGSTOP)
    killed = up.wait(mark, "child_killed", 6 * T, child="worker-1", reason="hung")
    assert killed["pid"] == pid
    restarted = up.wait(mark, "child_restarted", 6 * T, child="worker-1", reason="hung")
    assert restarted["pid"] != pid
    up.wait(mark, "worker_change", 12 * T, worker_id="worker-1", up=True)
    assert await up.speak_engine("After the freeze.") == ["bark"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_ready_and_metrics_show_the_restarts(up: Up) -> None:
    async with httpx.AsyncClient(timeout=2 * T) as client:
        ready = (await client.get(f"http://127.0.0.1:{up.port}/ready")).json()
        metrics = (await client.get(f"http://127.0.0.1:{up.port}/metrics")).text
    supervisor = ready["supervisor"]
    assert {"role": "worker", "reason": "exited", "count": 1} in supervisor["restarts"]
    assert {"role": "worker", "reason": "hung", "count": 1} in supervisor["restarts"]
    assert 'sesame_restarts_total{reason="hung",role="worker"} 1.0' in metrics
    assert 'sesame_restarts_total{reason="exited",role="worker"} 1.0' in metrics


async def test_sighup_replaces_worker_then_gateway_each_ready_before_the_old_drains(up: Up) -> None:
    old_worker = up.worker_pid()
    old_gateway = next(c["pid"] for c in up.state()["children"] if c["name"] == "gateway")  # type: ignore[attr-defined]
    mark = up.index()
    os.kill(up.proc.pid, signal.SIGHUP)
    up.wait(mark, "reload_started", 3 * T)
    up.wait(mark, "worker_ready", 12 * T, worker_id="worker-1-r1")
    retiring = up.wait(mark, "child_retiring", 3 * T, child="worker-1")
    assert retiring["pid"] == old_worker
    up.wait(mark, "worker_stopped", 6 * T, worker_id="worker-1")
    up.wait(mark, "child_restarted", 3 * T, child="gateway-r1", reason="reload")
    retiring = up.wait(mark, "child_retiring", 12 * T, child="gateway")
    assert retiring["pid"] == old_gateway
    done = up.wait(mark, "reload_done", 12 * T)
    assert done["ok"] is True
    assert await up.speak_engine("After the reload.") == ["bark"]
    names = [c["name"] for c in up.state()["children"]]  # type: ignore[attr-defined]
    assert sorted(names) == ["broker", "gateway-r1", "worker-1-r1"]
    with pytest.raises(ProcessLookupError):
        os.kill(int(old_gateway), 0)


def test_sigterm_stops_every_child_and_leaves_no_orphan(up: Up) -> None:
    children = [int(c["pid"]) for c in up.state()["children"] if c["pid"]]  # type: ignore[attr-defined]
    assert len(children) == 3  # broker, worker, gateway
    up.proc.signal(signal.SIGTERM)
    up.wait(0, "up_stopped", 12 * T)
    assert up.proc.proc.wait(3 * T) == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (up.run_dir / f"up-{up.port}.pid").exists()
