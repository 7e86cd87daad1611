"""Liveness with real processes (issue 24): busy is not dead.

A gateway that reads late (here: stopped while the worker keeps beating, so the heartbeats wait
unread in its socket) judges silence only after it has read them; a worker on a machine whose every
core is saturated keeps its jobs. A frozen worker is still dead within its window
(test_failover_e2e.py::test_frozen_worker_is_dead_by_missed_heartbeats).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from broker.launcher import Mosquitto
from tests.conftest import Service, T
from tests.wsclient import collect, send

TWO_SENTENCES = "The first sentence is here. And the second one follows it."


@pytest.fixture
def stack(mosquitto: Mosquitto) -> Iterator[Service]:
    svc = Service(mosquitto, None, {"SESAME_TIERS": "workers,espeak-ng", "SESAME_CACHE_ENABLED": "false"})
    try:
        yield svc
    finally:
        svc.close()


def went_down(svc: Service) -> list[dict[str, object]]:
    return [e for e in svc.gateway.events() if e.get("event") == "worker_change" and e.get("up") is False]


async def spoken_by_the_worker(svc: Service) -> bool:
    """A two-sentence turn, heard whole and without a fallback (the fallback tier is espeak-ng too)."""
    async with connect(svc.ws_url) as ws:
        await ws.recv()
        await send(ws, type="speak", text=TWO_SENTENCES)
        turn = await collect(ws, 12 * T)
    return len(turn.of("sentence_end")) == 2 and not turn.of("fallback")


BURN = "import os\nwhile True: os.getpid()"


async def test_busy_is_not_dead(stack: Service) -> None:
    """Every core saturated (at the worker's own priority), then a gateway that reads late: the
    worker keeps its jobs throughout and is never declared dead."""
    stack.start_worker("w1", "espeak-ng")
    before = len(went_down(stack))
    burners = [
        subprocess.Popen([sys.executable, "-c", BURN])  # noqa: ASYNC220 (started once, not awaited)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        for _ in range(3):
            assert await spoken_by_the_worker(stack)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    url = stack.broker.url_for("monitor")  # reads heartbeats
    async with aiomqtt.Client(
        url.host, url.port, username=url.username, password=url.password, protocol=aiomqtt.ProtocolVersion.V5
    ) as watch:
        await watch.subscribe("sesame/v1/workers/w1/heartbeat")
        stack.gateway.signal(signal.SIGSTOP)
        try:
            # Twice the window (3 x 200 ms) of heartbeats pile up unread in the gateway's socket;
            # when it runs again its deadline is overdue before it has read them.
            async with asyncio.timeout(6 * T):
                beats = 0
                async for _ in watch.messages:
                    beats += 1
                    if beats >= 7:
                        break
        finally:
            stack.gateway.signal(signal.SIGCONT)
    assert await spoken_by_the_worker(stack)
    assert len(went_down(stack)) == before
