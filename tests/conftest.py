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
from tests.support.localstack import Stack

# Shared fixtures from plugin modules (no test module imports a fixture by name).
pytest_plugins = ["tests.cloud.fixtures"]

T = 5.0 * float(os.environ.get("SESAME_TEST_TIMEOUT_SCALE", "1"))

logs.configure("INFO", json=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A real-time test (no gap in playback) owns the machine's cores: beside two other test files
    on a 2-core machine its listeners ran dry once in CI while the service met its pace alone. So it
    fails under xdist; make test runs the realtime ones alone, after the parallel run."""
    if item.get_closest_marker("realtime") and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("a realtime test runs alone, not under -n: make test runs -m realtime apart")


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


class Service(Stack):
    """The local stack (tests/support/localstack.py) on the test's broker, with the tests' timeouts."""

    def __init__(self, broker: Mosquitto, model_dir: Path | None, env: dict[str, str]) -> None:
        super().__init__(env, broker=broker, model_dir=model_dir, start_timeout=6 * T)


@pytest.fixture(scope="session")
def espeak_gateway() -> Iterator[Service]:
    """Broker + gateway, espeak-ng its only tier, no cache: one per test process, shared by every test
    that only opens sessions on it (each its own); a test that stops, kills or reconfigures a gateway
    builds its own stack."""
    with Mosquitto() as broker:
        svc = Service(broker, None, {"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false"})
        try:
            yield svc
        finally:
            svc.close()


@pytest.fixture(scope="module")
def service(dev_model_dir: Path) -> Iterator[Service]:
    """Broker + gateway + one Bark worker (dev checkpoint); local tiers: espeak-ng. Shared by a
    module's tests (each opens its own sessions); tests that kill things build their own stack."""
    with Mosquitto() as broker:
        svc = Service(
            broker, dev_model_dir, {"SESAME_TIERS": "workers,espeak-ng", "SESAME_CACHE_ENABLED": "false"}
        )
        try:
            svc.start_worker("bark-1")
            yield svc
        finally:
            svc.close()
