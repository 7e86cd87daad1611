"""A worker corrects a stale last will: a broker cluster may publish a worker's will from a dead
node after the worker moved to another node (aedes does, ~2 s later). The worker hears its own
``offline`` with its own pid, which it did not say, and publishes ``online`` again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiomqtt
import pytest

from broker import topics
from broker.launcher import Mosquitto
from broker.messages import WorkerStatus, worker_messages
from synth_worker.worker.process import replayed_will
from tests.conftest import Service, T


@pytest.fixture
def stack(mosquitto: Mosquitto) -> Iterator[Service]:
    svc = Service(mosquitto, None, {"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false"})
    try:
        yield svc
    finally:
        svc.close()


async def online_again(broker: Mosquitto, worker_id: str, pid: int) -> WorkerStatus:
    """The worker's status (retained, then live) until it is ``online`` from ``pid``."""
    url = broker.url_for("monitor")  # statuses are the monitor's to read
    async with aiomqtt.Client(
        url.host, url.port, username=url.username, password=url.password, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topics.worker_status(worker_id), 1)
        async with asyncio.timeout(4 * T):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                status = worker_messages.decode(message.payload)
                assert isinstance(status, WorkerStatus)
                if status.state == "online" and status.pid == pid:
                    return status
    raise AssertionError("no status")


async def test_a_replayed_will_is_answered_with_online(stack: Service, mosquitto: Mosquitto) -> None:
    worker = stack.start_worker("w-stale", engine="espeak-ng")
    will = WorkerStatus(worker_id="w-stale", state="offline", pid=worker.pid)
    url = mosquitto.url_for("w-stale")  # the broker replays the worker's own will: its user
    async with aiomqtt.Client(
        url.host, url.port, username=url.username, password=url.password, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.publish(topics.worker_status("w-stale"), will.to_bytes(), qos=1, retain=True)
    await asyncio.to_thread(worker.wait_event, "stale_last_will", 4 * T)
    await online_again(mosquitto, "w-stale", worker.pid)


@pytest.mark.parametrize(
    ("status", "answered"),
    [
        (WorkerStatus(worker_id="w", state="offline", pid=7), True),  # ours: a replayed will
        (WorkerStatus(worker_id="w", state="offline", pid=8), False),  # an earlier run's
        (WorkerStatus(worker_id="w", state="online", pid=7), False),
    ],
)
def test_only_an_offline_of_this_process_is_a_replayed_will(status: WorkerStatus, answered: bool) -> None:
    assert replayed_will(status.to_bytes(), pid=7) is answered
    assert replayed_will(b"", pid=7) is False  # a cleared retained status
