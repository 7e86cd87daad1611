"""``up``'s own mosquitto takes every new worker user, even when a SIGHUP is lost: mosquitto
drops one that lands in a reload (broker/user_probe.py), and a reload starts workers ``surge``
at a time. Run on the real broker with the production configuration."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from broker.user_probe import broker_accepts
from sesame_voice.children import Supervisor
from sesame_voice.local_broker import LocalBroker
from tests.conftest import T


class LosesTheFirstSighup:
    """The broker's process as the supervisor holds it, but the first SIGHUP never arrives."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc, self.dropped = proc, 0

    def send_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP and not self.dropped:
            self.dropped += 1
            return
        self.proc.send_signal(sig)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.proc, name)


async def test_new_workers_users_are_confirmed_though_a_sighup_is_lost(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, ["w-0"])
    proc = await asyncio.create_subprocess_exec(
        *broker.spec.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(T):
            while b" running" not in await proc.stdout.readline():  # its listener is open
                pass
        drain = asyncio.create_task(proc.stdout.read())  # the reload lines, never left to fill the pipe
        sup = cast(Supervisor, SimpleNamespace(procs={"broker": LosesTheFirstSighup(proc)}))
        assert await asyncio.to_thread(broker_accepts, broker.url("w-0"), T)  # read at start
        urls = [broker.worker_url(wid, sup) for wid in ("w-1-r1", "w-2-r1", "w-3-r1")]  # one surge
        async with asyncio.timeout(T):
            await broker.confirmed()
        assert sup.procs["broker"].dropped == 1
        for url in urls:
            assert await asyncio.to_thread(broker_accepts, url, T), url.username
        proc.terminate()
        await drain
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
