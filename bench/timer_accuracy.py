"""How close to its deadline the gateway's timeout fires, and how often an idle gateway wakes.

In-process: the real ``Hub`` with an in-memory MQTT link (tests/support/memlink.py) and one ready
worker that never acknowledges. Each round speaks one sentence and measures when the
``ack_timeout`` error reaches the session's queue, against ``submit + SESAME_ACK_TIMEOUT``
(``--ack-ms``, default 200); each round starts at a random phase (0-50 ms), so that a periodic
timer cannot line up with the rounds. Then the gateway sits idle (one worker, long heartbeat
interval, no sessions) for ``--idle-s`` and the deadline task's wake-ups are counted.

    .venv/bin/python bench/timer_accuracy.py [--rounds 40] [--ack-ms 200] [--idle-s 3] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import machine
from broker import logs, topics
from broker.messages import Heartbeat
from broker.ws_protocol import Error, Speak
from clients.stats import Summary, table
from stream_server.config import GatewayConfig
from stream_server.core.failover import FailoverConfig
from stream_server.hub.hub import Hub
from synth_worker.voices import VoiceMap
from tests.support.memlink import MemoryLink

HEADER = "timer accuracy: how late a 1-attempt ack timeout fires, and idle wake-ups of the gateway"
GW = "gw-bench"


def config(ack_s: float) -> GatewayConfig:
    base = GatewayConfig.from_env({"SESAME_GATEWAY_ID": GW, "SESAME_TIERS": "workers"})
    # No cool-down: the same worker times out every round.
    failover = FailoverConfig(tiers=("workers",), ack_timeout_s=ack_s, max_retries=0, retry_delay_s=0.0)
    return replace(
        base, failover=failover, cache_enabled=False, publish_session_events=False, preload_phrases=()
    )


async def measure(rounds: int, ack_s: float, idle_s: float) -> tuple[list[float], int, float]:
    link = MemoryLink(GW)
    hb = Heartbeat("w1", 1, "ready", "bark", "m", 1, 0.0, 3600.0).to_bytes()
    late: list[float] = []
    async with Hub(config(ack_s), VoiceMap.load(None, "maya"), {}, link=link) as hub:
        await link.deliver(topics.worker_heartbeat("w1"), hb)
        for i in range(rounds):
            # A random phase, so that no periodic timer can line up with the rounds.
            await asyncio.sleep(random.uniform(0.0, 0.05))
            session = hub.open_session()
            start = time.monotonic()
            hub.receive(session, Speak(f"Nobody acknowledges sentence {i}."))
            while not isinstance(item := await session.out.get(), Error):
                pass
            late.append(time.monotonic() - start - ack_s)
            if "ack_timeout" not in item.message:
                raise RuntimeError(f"expected an ack timeout, got {item}")
            hub.close_session(session)
        await asyncio.sleep(0.1)  # let the last close settle
        before = hub.deadlines.wakeups
        await asyncio.sleep(idle_s)  # idle on purpose: what an idle gateway does meanwhile
        idle_wakeups = hub.deadlines.wakeups - before
    return late, idle_wakeups, idle_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--ack-ms", type=float, default=200.0)
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="3 rounds, 0.5 s idle (for the test suite)")
    a = ap.parse_args(argv)
    logs.configure("CRITICAL")  # every round ends in a logged failover; the table is the output
    rounds, idle_s = (3, 0.5) if a.smoke else (a.rounds, a.idle_s)
    late, wakeups, idle = asyncio.run(measure(rounds, a.ack_ms / 1000, idle_s))
    s = Summary.of(late)
    print(HEADER)
    print(f"machine: {machine()}; {rounds} rounds, SESAME_ACK_TIMEOUT={a.ack_ms:.0f} ms, in-process hub")
    print(
        table(
            ["measurement", "n", "p50", "p95", "p99", "max"],
            [
                [
                    "ack timeout lateness (ms)",
                    s.count,
                    *(f"{v * 1000:.2f}" for v in (s.p50, s.p95, s.p99, s.max)),
                ],
            ],
        )
    )
    print(f"idle: {wakeups} wake-ups in {idle:.1f} s ({wakeups / idle:.1f}/s)")
    if a.json_out:
        payload = {
            "machine": machine(),
            "rounds": rounds,
            "ack_timeout_ms": a.ack_ms,
            "lateness_ms": s.to_dict(1000),
            "idle_wakeups_per_s": wakeups / idle,
        }
        a.json_out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
