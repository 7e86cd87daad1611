"""Worker start-up: process start to its first ``ready`` heartbeat, for a Bark worker whose
checkpoint is on local disk (the plan's target: model preloading < 10 s).

A mosquitto is started; the worker process (``sesame-voice worker``, ``SESAME_ENGINE=bark``) is
started with a local checkpoint; this script listens on the worker's heartbeat topic and notes when
the first heartbeat with ``state: ready`` arrives. The worker's own log lines give the split: Python
and library imports until ``worker_starting``, ``model_loaded`` (load_s), ``model_warmed_up``
(warm_up_s: each of Bark's stages once on a few positions, SESAME_WARMUP_ON_START). Each
configuration runs ``--runs`` times; the checkpoint's files are in the page cache after the first
read (a warm disk).

    .venv/bin/python bench/ready_time.py [--model DIR] [--size bark-small] [--runs 2] [--smoke]

The checkpoint is built once with ``synth_worker.devmodel`` (random weights, bark-small sizes)
into ``.models/bark-small`` unless ``--model`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt

from bench._bark import ensure_checkpoint
from bench._stack import REPO, Proc, machine
from broker import topics
from broker.launcher import Mosquitto
from broker.messages import Heartbeat, worker_messages
from broker.settings import MqttUrl
from clients.stats import Summary, table

HEADER = "worker ready time: process start -> first `ready` heartbeat (Bark, local checkpoint)"


async def first_ready(url: MqttUrl, worker_id: str, started: asyncio.Event, limit_s: float) -> float:
    """Monotonic time the first ready heartbeat of ``worker_id`` arrived (read as ``monitor``)."""
    async with aiomqtt.Client(
        url.host,
        url.port,
        username=url.username,
        password=url.password,
        identifier=f"bench-ready-{worker_id}",
    ) as client:
        await client.subscribe(topics.worker_heartbeat(worker_id), qos=0)
        started.set()
        async with asyncio.timeout(limit_s):
            async for message in client.messages:
                beat = worker_messages.decode(bytes(message.payload))  # type: ignore[arg-type]
                if isinstance(beat, Heartbeat) and beat.state == "ready":
                    return time.monotonic()
                if isinstance(beat, Heartbeat) and beat.state == "unavailable":
                    raise RuntimeError(f"worker unavailable: {beat.reason}")
    raise RuntimeError("heartbeats ended")


def one_run(
    broker: Mosquitto, model: Path, worker_id: str, env: dict[str, str], timeout: float
) -> dict[str, float]:
    async def go() -> dict[str, float]:
        subscribed = asyncio.Event()
        waiter = asyncio.create_task(first_ready(broker.url_for("monitor"), worker_id, subscribed, timeout))
        await subscribed.wait()
        t0 = time.monotonic()
        proc = Proc(
            ["worker"],
            {
                "SESAME_MQTT_URL": broker.url_for(worker_id).env_value(),
                "SESAME_WORKER_ID": worker_id,
                "SESAME_ENGINE": "bark",
                "SESAME_MODEL": str(model),
                "SESAME_HEARTBEAT_INTERVAL_MS": "100",
                **env,
            },
            worker_id,
        )
        try:
            ready = await waiter
        finally:
            proc.stop()
        out: dict[str, float] = {"ready_s": ready - t0}
        for when, event in proc.timed_events():
            match event.get("event"):
                case "worker_starting":
                    out["start_s"] = when - t0
                case "model_loaded":
                    out["load_s"] = float(event.get("load_s", 0.0))
                case "model_warmed_up":
                    out["warm_up_s"] = float(event.get("warm_up_s", 0.0))
        return out

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--model", type=Path, help="checkpoint directory (default: build .models/bark-small)")
    ap.add_argument("--size", default="bark-small", choices=("dev", "bark-small"))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=170.0)
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="the dev checkpoint, one run (for the test suite)")
    a = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="sesame-ready-") if a.smoke else None
    size = "dev" if a.smoke else a.size
    default_dir = Path(tmp.name) / "dev" if tmp else REPO / ".models" / size
    model, built_s = ensure_checkpoint(a.model or default_dir, size)
    runs = 1 if a.smoke else a.runs
    configs: list[tuple[str, dict[str, str]]] = [
        ("warm-up on (as shipped)", {}),
        ("warm-up off (SESAME_WARMUP_ON_START=false)", {"SESAME_WARMUP_ON_START": "false"}),
    ]
    if a.smoke:
        configs = configs[:1]
    rows = []
    report: dict[str, object] = {"machine": machine(), "model": str(model), "size": size, "runs": {}}
    with Mosquitto() as broker:
        for label, env in configs:
            results = [one_run(broker, model, f"ready-{i}", env, a.timeout) for i in range(runs)]
            report["runs"][label] = results  # type: ignore[index]
            for key in ("ready_s", "start_s", "load_s", "warm_up_s"):
                vals = [r[key] for r in results if key in r]
                if vals:
                    s = Summary.of(vals)
                    rows.append(
                        [
                            label if key == "ready_s" else "",
                            key,
                            len(vals),
                            f"{min(vals):.2f}",
                            f"{s.p50:.2f}",
                            f"{s.max:.2f}",
                        ]
                    )
    if tmp is not None:
        tmp.cleanup()
    print(HEADER)
    print(
        f"machine: {machine()}; checkpoint {model} ({size}, random weights)"
        + (f"; built in {built_s:.1f} s (not counted)" if built_s else "")
    )
    print(table(["configuration", "seconds", "runs", "min", "median", "max"], rows))
    ready = [r["ready_s"] for r in report["runs"]["warm-up on (as shipped)"]]  # type: ignore[index]
    print(
        f"ready time as shipped: median {Summary.of(ready).p50:.2f} s; plan target < 10 s: "
        f"{'met' if Summary.of(ready).p50 < 10 else 'NOT met'}"
    )
    if a.json_out:
        a.json_out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
