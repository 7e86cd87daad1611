"""``sesame-voice gateway``: the websocket + HTTP gateway process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import uvicorn

from broker import logs
from broker.errors import SesameError
from broker.messages import Heartbeat
from synth_worker.engine import Engine
from synth_worker.voices import VoiceMap

from .actions import WORKERS, Action
from .app import create_app
from .config import GatewayConfig
from .hub import Hub
from .monitor import Monitor
from .monitor_hooks import observe
from .status_view import HubView
from .tiers import build_local_engines, close_engines

log = logs.get("sesame.gateway")


async def serve(config: GatewayConfig, started: asyncio.Event | None = None) -> None:
    """Run the gateway until cancelled or a signal arrives."""
    voices = VoiceMap.load(config.voices_path, config.default_voice)
    engines = build_local_engines(config, voices)
    try:
        await _serve(config, voices, engines, started)
    finally:
        await close_engines(engines)


async def _serve(
    config: GatewayConfig, voices: VoiceMap, engines: dict[str, Engine], started: asyncio.Event | None
) -> None:
    async with Hub(config, voices, engines) as hub, monitoring(config, hub) as monitor:
        hub.monitor = monitor
        app = create_app(hub)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                ws="websockets-sansio",
                ws_max_size=1 << 20,
                ws_ping_interval=20,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        # Our handlers go in before uvicorn's: uvicorn keeps them as the "original" handlers and
        # re-raises a captured SIGTERM into them after its shutdown, which then only asks it to
        # exit (already done) instead of killing the process before the hub's clean-up.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(server.serve(), name="uvicorn")
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no started event
                await asyncio.sleep(0.01)
            if server.started:
                log.info(
                    "gateway_listening",
                    url=f"http://{config.host}:{config.port}",
                    broker=str(config.mqtt_url),
                    tiers=list(config.failover.tiers),
                    gateway_id=config.gateway_id,
                )
                if started is not None:
                    started.set()


def monitoring(config: GatewayConfig, hub: Hub) -> Monitor:
    """Probes, persisted uptime and alerts (docs/monitoring.md), fed by the hub's decisions."""
    paths = tuple(t for t in config.failover.tiers if t == WORKERS or t in hub.local.engines)
    monitor = Monitor(
        config.monitor,
        interval_s=config.health_check_interval_s,
        probe_timeout_s=config.failover.timeout_s,
        paths=paths,
        engines=hub.local.engines,
        voice=hub.voices.default,
        mqtt_url=config.mqtt_url,
        gateway_id=config.gateway_id,
        metrics=hub.metrics,
        view=HubView(hub),
    )

    def feed(item: Action | Heartbeat) -> None:
        up = False
        if isinstance(item, Heartbeat):
            worker = hub.scheduler.registry.workers.get(item.worker_id)
            up = worker is not None and worker.up
        observe(monitor, item, worker_up=up)

    hub.observers.append(feed)
    return monitor


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sesame-voice gateway", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP/websocket port (SESAME_PORT, default 8000)")
    parser.add_argument("--host", help="bind address (SESAME_HOST, default 127.0.0.1)")
    parser.add_argument("--mqtt-url", help="broker (SESAME_MQTT_URL)")
    args = parser.parse_args(argv)
    overrides = {
        k: str(v)
        for k, v in {
            "SESAME_PORT": args.port,
            "SESAME_HOST": args.host,
            "SESAME_MQTT_URL": args.mqtt_url,
        }.items()
        if v is not None
    }
    import os

    try:
        config = GatewayConfig.from_env({**os.environ, **overrides})
    except SesameError as exc:
        print(f"sesame-voice gateway: {exc}")
        return 2
    logs.configure(config.log_level)
    asyncio.run(serve(config))
    return 0
