"""``sesame-voice reload`` while websocket turns keep coming: no turn fails, nothing is lost.

A real ``up`` (broker, one Bark worker on the dev checkpoint, gateway); the open-loop load tester
(one websocket session per turn) runs through a whole rolling reload: the worker is replaced ready
first, then the gateway (the new one accepts on the shared socket, the old one drains its sessions
and closes them with 1012 + ``reconnect``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from clients import load_requests, loadtest
from tests.conftest import T
from tests.sesame_voice.test_up_supervised import Up


async def test_a_reload_under_load_fails_no_turn(tmp_path: Path, dev_model_dir: Path) -> None:
    up = Up(tmp_path, dev_model_dir)
    try:
        up.wait(0, "gateway_listening", 12 * T)
        up.wait(0, "worker_change", 12 * T, worker_id="worker-1", up=True)
        cfg = load_requests.LoadConfig(
            url=f"http://127.0.0.1:{up.port}",
            mode="ws",
            rate=3.0,
            duration_s=40.0,
            progress=False,
            timeout_s=12 * T,
        )
        load = asyncio.create_task(loadtest.run(cfg))
        mark = up.index()
        await asyncio.to_thread(up.wait, mark, "session_open", 3 * T)
        os.kill(up.proc.pid, signal.SIGHUP)
        done = await asyncio.to_thread(up.wait, mark, "reload_done", 24 * T)
        result = await load
        drained = [e for e in up.proc.events() if e.get("event") == "gateway_drained"]
    finally:
        up.proc.stop(20)
    assert done["ok"] is True
    errors = [(o.index, o.error) for o in result.outcomes if o.error is not None]
    assert errors == []
    assert len(result.outcomes) == result.scheduled
    assert all(o.sentences > 0 for o in result.outcomes)
    assert len(drained) == 1  # the old gateway drained (the new one is still serving)
