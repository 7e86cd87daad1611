"""``sesame-voice gateway``: the websocket + HTTP gateway process, and its composition root.

This is the one module that knows the concrete ``Hub``: it builds the hub (and with it the SIGTERM
drainer its deadline task drives), the monitor and the HTTP app, and passes each what it needs (the
others see the hub through small ports: ``hub/ports.py``, ``http/ports.py``, and the ports beside
their users)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

import uvicorn
import uvloop

from broker import cpu_slice, logs
from broker.errors import EXIT_CONFIG, SesameError
from broker.messages import Heartbeat
from broker.sdnotify import Notifier
from stream_server.core.actions import WORKERS, Action
from stream_server.http.app import create_app
from stream_server.http.listen import listening_socket
from stream_server.http.slow_headers import deadlined_h11
from stream_server.http.ws_frames import FramesProtocol
from stream_server.hub.hub import Hub
from stream_server.hub.observers import Observers
from stream_server.hub.shutdown import Drainer
from stream_server.hub.tier_engines import build_local_engines
from stream_server.monitoring.hooks import observe
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.status_view import HubView
from synth_worker.engine import Engine
from synth_worker.engines import close_engines
from synth_worker.voices import VoiceMap

from .config import GatewayConfig, is_loopback

log = logs.get("sesame.gateway")


class _Server(uvicorn.Server):
    """uvicorn would take SIGTERM/SIGINT for itself (signal.signal while serving) and shut down at
    once, closing every websocket mid-turn. The gateway handles them: the first one drains."""

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
    observers = Observers()
    async with (
        Hub(config, voices, engines, observers=observers) as hub,
        monitoring(config, hub, observers) as monitor,
    ):
        drainer = hub.drainer  # driven by the hub's deadline task
        app = create_app(hub, monitor, drainer)
        server = _Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                http=deadlined_h11(config.header_timeout_s),
                ws=FramesProtocol,  # websockets-sansio, with frames written by the hub (ws_frames.py)
                ws_max_size=1 << 20,
                # No permessage-deflate: audio frames are PCM or already-compressed codecs, which
                # deflate barely shrinks; compressing every frame cost the gateway CPU and time.
                ws_per_message_deflate=False,
                ws_ping_interval=20,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        loop = asyncio.get_running_loop()
        sock = listening_socket(config.host, config.port, os.environ)
        async with asyncio.TaskGroup() as tg:

            def on_signal() -> None:
                # The first SIGTERM drains (a successor may share the socket); a second one, or
                # one before serving, stops at once.
                if drainer.draining or not server.started:
                    server.should_exit = True
                    return
                tg.create_task(_drain(drainer, server), name="drain")

            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, on_signal)
            task = tg.create_task(server.serve(sockets=[sock]), name="uvicorn")
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
                Notifier().notify("READY=1", "STATUS=listening")  # systemd, or `up` in a reload
                if started is not None:
                    started.set()


async def _drain(drainer: Drainer, server: uvicorn.Server) -> None:
    """SIGTERM: stop accepting (a successor shares the listening socket), let the turns in flight
    finish, tell each session to reconnect (1012), then stop (``core/shutdown.py``,
    ``hub/shutdown.py``)."""
    for listener in getattr(server, "servers", []):
        listener.close()
    Notifier().notify("STOPPING=1")
    drainer.start()
    try:
        await drainer.over.wait()
    finally:
        server.should_exit = True


def monitoring(config: GatewayConfig, hub: Hub, observers: Observers) -> Monitor:
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

    observers.subscribe(feed)
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
    try:
        config = GatewayConfig.from_env({**os.environ, **overrides})
    except SesameError as exc:
        print(f"sesame-voice gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(config.log_level)
    if config.auth_token is None and not config.client_tokens and not is_loopback(config.host):
        log.warning("auth_off_beyond_loopback", host=config.host, reason="SESAME_ALLOW_OPEN=1")
    if config.cpu_slice_us:
        try:
            cpu_slice.request_slice(config.cpu_slice_us)  # before any thread: they inherit it
        except OSError as exc:  # a kernel before 6.12: its default slice, and nothing else changes
            log.warning("cpu_slice_refused", slice_us=config.cpu_slice_us, error=str(exc))
    # uvloop: libuv's loop, and the writes a socket gets in one pass of the loop go out in one
    # system call (a cached sentence is ~75 frames at once); bench/gateway_cpu.py measures it.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))
    return 0
