"""``sesame-voice gateway``: the websocket + HTTP gateway process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from broker import logs
from broker.errors import SesameError
from synth_worker.engine import Engine
from synth_worker.sdnotify import Notifier
from synth_worker.voices import VoiceMap

from .app import create_app
from .config import GatewayConfig
from .drainer import Drainer
from .draining import HubDrainTarget
from .hub import Hub
from .listen import listening_socket
from .tiers import build_local_engines, close_engines

log = logs.get("sesame.gateway")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would skip our own clean-up (the hub's
    MQTT goodbye, `up` stopping its workers). We install the handlers ourselves instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    async with Hub(config, voices, engines) as hub:
        app = create_app(hub)
        server = _Server(
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
        loop = asyncio.get_running_loop()
        drains: set[asyncio.Task[None]] = set()

        def on_signal() -> None:
            if drains or not server.started:  # a second signal, or not serving yet: stop now
                server.should_exit = True
                return
            drains.add(loop.create_task(_drain(hub, app, server, config), name="drain"))

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        sock = listening_socket(config.host, config.port, os.environ)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
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
            Notifier().notify("READY=1", "STATUS=listening")  # systemd, or `up` during a reload
            if started is not None:
                started.set()
        await task


async def _drain(hub: Hub, app: FastAPI, server: uvicorn.Server, config: GatewayConfig) -> None:
    """SIGTERM: stop accepting (a successor shares the listening socket), let the turns in flight
    finish, tell each session to reconnect (1012), then stop."""
    for listener in getattr(server, "servers", []):
        listener.close()
    Notifier().notify("STOPPING=1")
    drainer = Drainer(HubDrainTarget(hub), timeout_s=config.drain_timeout_s)
    app.state.drainer = drainer
    try:
        await drainer.run()
    finally:
        server.should_exit = True


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
    try:
        config = GatewayConfig.from_env({**os.environ, **overrides})
    except SesameError as exc:
        print(f"sesame-voice gateway: {exc}")
        return 2
    logs.configure(config.log_level)
    asyncio.run(serve(config))
    return 0
