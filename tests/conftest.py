"""Shared fixtures: a real mosquitto on a free loopback port, the dev Bark checkpoint, timeouts.

Every wait in the tests is a multiple of ``T`` (SESAME_TEST_TIMEOUT_SCALE scales it for slow CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import logs
from broker.launcher import Mosquitto
from tests.procs import Proc

T = 5.0 * float(os.environ.get("SESAME_TEST_TIMEOUT_SCALE", "1"))

logs.configure("INFO", json=True)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh broker per test (function scope: tests restart and stop it)."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def shared_mosquitto() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def dev_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight Bark checkpoint built by the project's own builder."""
    from synth_worker.devmodel import build_dev_model

    out = tmp_path_factory.mktemp("bark-dev")
    build_dev_model(out)
    return out


class Service:
    """A real stack on loopback: mosquitto, the gateway process, and worker processes."""

    def __init__(self, broker: Mosquitto, model_dir: Path | None, env: dict[str, str]) -> None:
        from broker.launcher import free_port

        self.broker = broker
        self.model_dir = model_dir
        self.port = free_port()
        self.env = {"SESAME_MQTT_URL": str(broker.url), "SESAME_PORT": str(self.port), **env}
        self.workers: dict[str, Proc] = {}
        self.gateway = Proc(["gateway"], self.env, "gateway")
        self.gateway.wait_event("gateway_listening", 6 * T)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start_worker(self, worker_id: str, engine: str = "bark", **env: str) -> Proc:
        wenv = {**self.env, "SESAME_WORKER_ID": worker_id, "SESAME_ENGINE": engine,
                "SESAME_HEARTBEAT_INTERVAL_MS": "200",
                # Random weights can sample Bark's end token early; seed 1 gives full-length audio.
                "SESAME_SEED": "1", **env}
        if engine == "bark" and self.model_dir is not None:
            wenv.setdefault("SESAME_MODEL", str(self.model_dir))
        proc = Proc(["worker"], wenv, worker_id)
        self.workers[worker_id] = proc
        self.gateway.wait_for(
            lambda e: e.get("event") == "worker_change" and e.get("worker_id") == worker_id and e.get("up") is True,
            12 * T, f"{worker_id} ready",
        )
        return proc

    def close(self) -> None:
        for proc in self.workers.values():
            proc.stop()
        self.gateway.stop()


@pytest.fixture(scope="module")
def service(dev_model_dir: Path) -> Iterator[Service]:
    """Broker + gateway + one Bark worker (dev checkpoint); local tiers: espeak-ng. Shared by a
    module's tests (each opens its own sessions); tests that kill things build their own stack."""
    with Mosquitto() as broker:
        svc = Service(broker, dev_model_dir, {"SESAME_TIERS": "workers,espeak-ng", "SESAME_CACHE_ENABLED": "false"})
        try:
            svc.start_worker("bark-1")
            yield svc
        finally:
            svc.close()
