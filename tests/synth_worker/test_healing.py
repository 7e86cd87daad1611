"""Workers that heal themselves: the model retried until it appears, stuck jobs, systemd, health file."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from broker import topics
from broker.launcher import Mosquitto
from broker.messages import Job, JobDone, JobError, WorkerStatus, decode_worker_message
from broker.sdnotify import Notifier
from broker.settings import MqttNodes
from synth_worker import health
from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.engine import CancelToken, EngineChunk, SynthesisRequest
from synth_worker.job_actions import Send, StartJob
from synth_worker.worker.process import EXIT_STUCK, Worker
from tests.conftest import T
from tests.synth_worker.support import Listener, WorkerProcess


def make_job(text: str = "Hello there.", n: int = 1, worker: str = "w1") -> Job:
    return Job(
        job_id=f"j{n}-{uuid.uuid4().hex[:6]}",
        session_id="s1",
        seq=n,
        text=text,
        voice="maya",
        reply_to=topics.reply_to("gw1", worker),
    )


def core(**kw: float) -> WorkerCore:
    return WorkerCore("w1", engine="bark", model="m", pid=1, interval_s=0.5, **kw)  # type: ignore[arg-type]


# --- the core ------------------------------------------------------------------------------------


def test_unavailable_heals_to_ready_and_takes_jobs() -> None:
    c = core()
    c.unavailable("no model yet")
    assert c.heartbeat(0.0).reason == "no model yet"
    c.warming()
    assert (c.state, c.reason) == ("warming", None)
    assert c.ready(1.0) == []
    assert c.state == "ready"
    actions = c.receive_job(make_job().to_bytes(), 2.0)
    assert any(isinstance(a, StartJob) for a in actions)


def test_draining_does_not_come_back_to_ready() -> None:
    c = core()
    c.drain()
    c.warming()
    assert c.ready(1.0) == []
    assert c.state == "draining"


@pytest.mark.parametrize(
    ("rtf_samples", "text", "floor", "limit"),
    [
        ([], "x" * 140, 60.0, 100.0),  # no RTF measured yet: 1.0 x 10 s expected x 10
        ([], "short", 60.0, 60.0),  # the floor
        ([(2.0, 1.0)], "x" * 140, 60.0, 200.0),  # rtf 2 x 10 s x 10
        ([(0.1, 1.0)], "x" * 140, 5.0, 10.0),  # fast worker: 0.1 x 10 x 10
        ([(0.1, 1.0)], "x" * 14, 5.0, 5.0),
    ],
)
def test_stuck_limit(rtf_samples: list[tuple[float, float]], text: str, floor: float, limit: float) -> None:
    c = core(stuck_factor=10.0, stuck_floor_s=floor)
    for compute, audio in rtf_samples:
        c._rtf.add(compute, audio)
    assert c.stuck_limit_s(make_job(text)) == pytest.approx(limit)


def test_next_deadline_and_stuck_follow_the_running_jobs() -> None:
    c = core(stuck_floor_s=5.0)
    c.ready(0.0)
    assert c.next_deadline() is None
    j = make_job("Hi.")
    c.receive_job(j.to_bytes(), 10.0)
    assert c.next_deadline() == pytest.approx(15.0)
    assert c.stuck(14.9) == []
    assert [(job.job_id, round(ran, 1)) for job, ran in c.stuck(16.0)] == [(j.job_id, 6.0)]
    c.job_done(j.job_id, chunks=1, samples=24_000, sample_rate=24_000, synth_s=0.5, now=12.0)
    assert c.next_deadline() is None
    assert c.stuck(100.0) == []


def test_give_up_fails_every_job_with_worker_stuck() -> None:
    c = core()
    c.ready(0.0)
    a, b = make_job(n=1), make_job(n=2)
    c.receive_job(a.to_bytes(), 1.0)
    c.receive_job(b.to_bytes(), 1.0)  # queued behind a
    errors = [x.message for x in c.give_up("stuck") if isinstance(x, Send)]
    assert {(e.job_id, e.code) for e in errors if isinstance(e, JobError)} == {
        (a.job_id, "worker_stuck"),
        (b.job_id, "worker_stuck"),
    }
    assert c.state == "unavailable" and c.idle and c.next_deadline() is None


# --- systemd notify and the health file ------------------------------------------------------------


def test_notifier_speaks_the_sd_notify_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(T)
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.notify("READY=1", "STATUS=ready")
        assert server.recv(4096) == f"READY=1\nSTATUS=ready\nMAINPID={os.getpid()}".encode()
        notifier.close()
    assert not Notifier({}).notify("WATCHDOG=1")  # not under systemd: nothing, no error
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("WATCHDOG=1")


def test_notifier_abstract_socket_address() -> None:
    name = f"sesame-test-{uuid.uuid4().hex[:8]}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(T)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert server.recv(64) == f"WATCHDOG=1\nMAINPID={os.getpid()}".encode()


@pytest.mark.parametrize(
    ("state", "age", "ok", "says"),
    [
        ("ready", 0.2, True, "ready"),
        ("loading", 1.0, True, "loading"),
        ("draining", 0.1, True, "draining"),
        ("ready", 3.0, False, "hung or stopped"),  # 3 x 0.5 s + 1 s slack = 2.5 s
        ("unavailable", 0.1, False, "unavailable"),
    ],
)
def test_health_check(tmp_path: Path, state: str, age: float, ok: bool, says: str) -> None:
    path = tmp_path / "health.json"
    health.write(path, state=state, at=100.0, interval_s=0.5, pid=1)
    result = health.check(path, 100.0 + age)
    assert result.ok is ok
    assert says in result.reason


def test_health_check_without_a_file(tmp_path: Path) -> None:
    result = health.check(tmp_path / "missing.json", 0.0)
    assert not result.ok and "no readable health file" in result.reason


# --- real workers --------------------------------------------------------------------------------


async def test_a_model_that_appears_later_makes_the_unavailable_worker_ready(
    mosquitto: Mosquitto, dev_model_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "bark-later"
    health_file = tmp_path / "health.json"
    worker = WorkerProcess(
        mosquitto,
        {
            "SESAME_MODEL": str(model),
            "SESAME_MODEL_RETRY_MS": "300",
            "SESAME_SEED": "1",
            "SESAME_HEALTH_FILE": str(health_file),
        },
    )
    try:
        async with Listener(mosquitto, [topics.worker_heartbeat(worker.worker_id)]) as mqtt:
            await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "unavailable", 6 * T)
            assert not health.check(health_file, time.time()).ok
            worker.wait_log("model_retry_scheduled", 2 * T)
            staging = tmp_path / "staging"
            shutil.copytree(dev_model_dir, staging)
            staging.rename(model)  # appears at once, whole
            mark = len(mqtt.received)
            beat = await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "ready", 12 * T, start=mark)
        assert beat.reason is None
        assert worker.alive
        ready = worker.wait_log("worker_ready", T)
        assert ready["attempt"] > 1
        assert health.check(health_file, time.time()).ok
        job = make_job("Now I can speak.", worker=worker.worker_id)
        async with Listener(mosquitto, [f"{job.reply_to}/#"]) as mqtt:
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            outcome = await mqtt.job(job.reply_to, job.job_id, 12 * T)
        assert isinstance(outcome.end, JobDone) and outcome.end.engine == "bark"
        assert outcome.frames
    finally:
        worker.close()


class HangingEngine:
    """A test engine whose synthesis blocks its thread until released: a stuck inference."""

    name = "bark"
    model = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    async def load(self) -> float:
        return 0.0

    async def warm_up(self) -> float:
        return 0.0

    def close(self) -> None:
        self.release.set()

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        return self._run(request)

    async def _run(self, request: SynthesisRequest) -> AsyncIterator[EngineChunk]:
        def block() -> None:
            self.entered.set()
            self.release.wait(60 * T)  # ignores cancel, as a wedged torch kernel would

        thread = threading.Thread(target=block, daemon=True)
        thread.start()
        while thread.is_alive():
            await asyncio.to_thread(thread.join, 0.05)
        yield EngineChunk(np.zeros(240, np.float32), request.sample_rate)


async def test_a_stuck_job_is_reported_and_the_worker_exits_to_be_replaced(mosquitto: Mosquitto) -> None:
    engine = HangingEngine()
    wid = f"w-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(
        worker_id=wid,
        mqtt_url=MqttNodes.of(mosquitto.url_for(wid)),
        heartbeat_interval_s=0.2,
        stuck_floor_s=0.5,
        stuck_factor=10.0,
        drain_timeout_s=30.0,
    )
    worker = Worker(config, engine)  # type: ignore[arg-type]
    job = make_job("This will never finish.", worker=wid)
    try:
        async with Listener(
            mosquitto, [f"{job.reply_to}/#", topics.worker_status(wid), topics.worker_heartbeat(wid)]
        ) as mqtt:
            run = asyncio.create_task(worker.run())
            await mqtt.heartbeat(wid, lambda hb: hb.state == "ready", 4 * T)
            await mqtt.publish(topics.worker_jobs(wid), job.to_bytes())
            outcome = await mqtt.job(job.reply_to, job.job_id, 4 * T)
            async with asyncio.timeout(4 * T):
                code = await run
            status = await mqtt.wait_for(
                lambda r: (
                    r.topic == topics.worker_status(wid)
                    and getattr(decode_worker_message(r.payload), "state", "") == "offline"
                ),
                T,
            )
        assert engine.entered.is_set()
        assert isinstance(outcome.end, JobError)
        assert outcome.end.code == "worker_stuck"
        assert code == EXIT_STUCK
        assert isinstance(decode_worker_message(status.payload), WorkerStatus)
    finally:
        engine.release.set()
