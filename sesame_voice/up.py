"""``sesame-voice up``: the whole service in the foreground, under one supervisor process.

This process runs no server itself: it supervises children (``sesame_voice.children``), each in a
process group of its own: a local mosquitto (unless SESAME_MQTT_URL is set), N workers and the
gateway. A child that exits is restarted with backoff; a worker silent on its heartbeats and a
gateway whose ``/health`` does not answer are killed and replaced (``sesame_voice.supervisor``).

Signals: SIGTERM or Ctrl-C stop everything (gateway, workers, broker, in that order) and exit 0;
SIGHUP (what ``sesame-voice reload`` sends) replaces the workers one at a time without dropping a
job. The local broker is configured as production is (``broker/launcher.py``): anonymous clients
are refused; its generated credentials live in ``{run_dir}/broker-{port}`` (0700, files 0600), each
child gets only its own (the gateway ``gateway``, each worker a user named by its id, the supervisor
``monitor``), and ``up_started`` says how to listen with mosquitto_sub as ``listener``.
The pid is written to ``{run_dir}/up-{port}.pid`` and the supervisor's state (restarts by
role and reason) to ``{run_dir}/supervisor-{port}.json``, which the gateway shows in ``/ready``.

The workers' engine: SESAME_ENGINE where set; else Bark when its weights are on this machine
(``--dev-model``, a SESAME_MODEL directory, or the model in the local Hugging Face cache); else
Piper, the offline neural voice, so a fresh machine runs a real worker path with a natural voice.

How many workers: ``sesame_voice/capacity.py`` (SESAME_WORKERS, else one per core for Piper).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from broker import logs
from broker.credentials import Credentials, private_dir
from broker.errors import ConfigError
from broker.launcher import free_port, local_config
from broker.settings import Env, MqttNodes, MqttUrl
from stream_server.http.listen import listening_socket

from .capacity import default_workers, workers_setting
from .child_process import ChildSpec
from .children import Supervisor
from .notify import NotifyListener
from .supervisor import Policy, SupervisorCore

log = logs.get("sesame.up")

DEV_MODEL_DIR = Path(".models/bark-dev")
CLI = (sys.executable, "-m", "sesame_voice.cli")


@dataclass(frozen=True, slots=True)
class UpConfig:
    port: int
    host: str
    workers: int | None  # None: default_workers(engine, cores), once the engine is known
    run_dir: Path
    policy: Policy
    probe_timeout_s: float
    stop_timeout_s: float
    reload_ready_timeout_s: float

    @classmethod
    def from_env(cls, env: dict[str, str], port: int | None, workers: int | None) -> UpConfig:
        e = Env(env)
        run_dir = e.raw("SESAME_RUN_DIR") or str(Path(tempfile.gettempdir()) / f"sesame-voice-{os.getuid()}")
        policy = Policy(
            initial_s=e.ms("SESAME_RESTART_BACKOFF_MS", 0.5),
            max_s=e.ms("SESAME_RESTART_BACKOFF_MAX_MS", 30.0),
            stable_s=e.ms("SESAME_RESTART_STABLE_MS", 60.0),
            missed_heartbeats=e.int("SESAME_MISSED_HEARTBEATS", 3, lo=1, hi=100),
            start_grace_s=e.ms("SESAME_START_GRACE_MS", 120.0),
            probe_interval_s=e.ms("SESAME_HEALTH_PROBE_INTERVAL_MS", 2.0),
            unhealthy_after=e.int("SESAME_UNHEALTHY_AFTER", 3, lo=1, hi=100),
        )
        if policy.initial_s <= 0 or policy.max_s < policy.initial_s:
            raise ConfigError("SESAME_RESTART_BACKOFF_MS must be > 0 and <= SESAME_RESTART_BACKOFF_MAX_MS")
        return cls(
            port=port if port is not None else e.int("SESAME_PORT", 8000, lo=1, hi=65535),
            host=e.str("SESAME_HOST", "127.0.0.1"),
            workers=workers if workers is not None else workers_setting(e),
            run_dir=Path(run_dir),
            policy=policy,
            probe_timeout_s=e.ms("SESAME_HEALTH_PROBE_TIMEOUT_MS", 2.0),
            stop_timeout_s=e.ms("SESAME_DRAIN_TIMEOUT_MS", 30.0) + 10.0,
            reload_ready_timeout_s=e.ms("SESAME_RELOAD_READY_TIMEOUT_MS", 120.0),
        )

    @property
    def worker_count(self) -> int:
        return 1 if self.workers is None else self.workers

    def pid_path(self) -> Path:
        return self.run_dir / f"up-{self.port}.pid"

    def state_path(self) -> Path:
        return self.run_dir / f"supervisor-{self.port}.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sesame-voice up", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="gateway port (SESAME_PORT, default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers (SESAME_WORKERS; default one per core for Piper, one for Bark)",
    )
    parser.add_argument(
        "--dev-model",
        action="store_true",
        help=f"build (once) and use the small random-weight Bark checkpoint in {DEV_MODEL_DIR}: "
        "noise, but every stage runs",
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    logs.configure(env.get("LOG_LEVEL", "INFO"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /health probe
    try:
        config = UpConfig.from_env(env, args.port, args.workers)
    except ConfigError as exc:
        log.error("bad_config", error=str(exc))  # noqa: TRY400
        return 2
    env["SESAME_PORT"] = str(config.port)
    if args.dev_model:
        if not (DEV_MODEL_DIR / "config.json").exists():
            from synth_worker.devmodel import build_dev_model

            build_dev_model(DEV_MODEL_DIR)
        env["SESAME_MODEL"] = str(DEV_MODEL_DIR.resolve())
    if not env.get("SESAME_ENGINE"):
        env["SESAME_ENGINE"] = "bark" if _bark_weights_here(env) else "piper"
    if config.workers is None:
        config = replace(config, workers=default_workers(env["SESAME_ENGINE"], os.cpu_count() or 1))
    try:
        return asyncio.run(_up(config, env))
    except ConfigError as exc:
        log.error("bad_config", error=str(exc))  # noqa: TRY400
        return 2


def _bark_weights_here(env: dict[str, str]) -> bool:
    """Whether SESAME_MODEL is a checkpoint on this machine (a directory, or in the HF cache)."""
    model = Env(env).raw("SESAME_MODEL") or "suno/bark-small"  # or the plan's MODEL_NAME
    if Path(model).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json", cache_dir=Env(env).raw("SESAME_MODEL_CACHE"))
    except ValueError:  # not a hub id either (a path that does not exist)
        return False
    return isinstance(cached, str)


class _Stack:
    """The children of one ``up``: their specs, and the rolling reload of the workers."""

    def __init__(
        self, config: UpConfig, env: dict[str, str], sup: Supervisor, broker: LocalBroker | None
    ) -> None:
        self.config, self.env, self.sup, self.broker = config, env, sup, broker
        self.slots: dict[int, tuple[str, int]] = {}  # slot -> (child name, generation)
        self.gateway: tuple[str, int] = ("gateway", 0)
        # Made once, inherited by every gateway (stream_server/http/listen.py): see the reload.
        self.listener = listening_socket(config.host, config.port, {})
        self.listener.set_inheritable(True)
        self._reload_lock = asyncio.Lock()

    def worker_spec(self, slot: int, generation: int) -> ChildSpec:
        base = self.env.get("SESAME_WORKER_ID", "worker")
        wid = f"{base}-{slot}" if generation == 0 else f"{base}-{slot}-r{generation}"
        env = {**self.env, "SESAME_WORKER_ID": wid}
        if self.broker is not None:
            env["SESAME_MQTT_URL"] = self.broker.worker_url(wid, self.sup).env_value()
        return ChildSpec(wid, "worker", (*CLI, "worker"), env, worker_id=wid)

    def start_workers(self) -> None:
        for slot in range(1, self.config.worker_count + 1):
            spec = self.worker_spec(slot, 0)
            self.slots[slot] = (spec.name, 0)
            self.sup.add(spec)

    def gateway_spec(self, generation: int) -> ChildSpec:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        url = f"http://{host}:{self.config.port}/health"
        name = "gateway" if generation == 0 else f"gateway-r{generation}"
        env = {**self.env, "SESAME_LISTEN_FD": str(self.listener.fileno())}
        if self.broker is not None:
            env["SESAME_MQTT_URL"] = self.broker.url("gateway").env_value()
        return ChildSpec(
            name, "gateway", (*CLI, "gateway"), env, health_url=url, pass_fds=(self.listener.fileno(),)
        )

    def start_gateway(self) -> None:
        self.gateway = (self.gateway_spec(0).name, 0)
        self.sup.add(self.gateway_spec(0))

    async def reload(self) -> None:
        if self._reload_lock.locked():
            log.warning("reload_already_running")
            return
        async with self._reload_lock:
            log.info("reload_started", workers=len(self.slots))
            ok = True
            timeout = self.config.reload_ready_timeout_s
            for slot, (name, generation) in sorted(self.slots.items()):
                new = self.worker_spec(slot, generation + 1)
                if not await self.sup.replace(name, new, timeout):
                    ok = False
                    break
                self.slots[slot] = (new.name, generation + 1)
            if ok:
                name, generation = self.gateway
                new = self.gateway_spec(generation + 1)
                ok = await self.sup.replace(name, new, timeout)
                if ok:
                    self.gateway = (new.name, generation + 1)
            log.info("reload_done", ok=ok)


class LocalBroker:
    """``up``'s own mosquitto: the production configuration and ACL, credentials made here."""

    def __init__(self, run_dir: Path, worker_ids: list[str]) -> None:
        self.port = free_port()
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ConfigError(
                "mosquitto is not installed (Debian package 'mosquitto'; `make up` installs it)"
            )
        self.credentials = Credentials(run_dir / f"broker-{self.port}")
        for wid in worker_ids:  # the first workers' users exist before the broker starts
            self.credentials.add_worker(wid)
        conf = self.credentials.dir / "mosquitto.conf"
        conf.write_text(local_config(self.port, self.credentials.passwd_path))
        self.spec = ChildSpec("broker", "broker", (binary, "-c", str(conf)))
        self.listener_home = self.credentials.client_options("listener", "127.0.0.1", self.port)
        self.credentials.client_options("monitor", "127.0.0.1", self.port)

    def url(self, user: str) -> MqttUrl:
        return self.credentials.url(user, "127.0.0.1", self.port)

    def worker_url(self, worker_id: str, sup: Supervisor) -> MqttUrl:
        """A worker's own user; a new one (a reload's worker) makes the broker reread its users.
        Should the worker connect before that, it is refused once and retries (broker/link.py)."""
        if self.credentials.add_worker(worker_id) and (proc := sup.procs.get("broker")) is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)
        return self.url(worker_id)

    def listen_hint(self) -> str:
        return (
            f"XDG_CONFIG_HOME={self.listener_home} mosquitto_sub -v "
            "-t 'sesame/v1/sessions/+/events' -t 'sesame/v1/sessions/+/audio'"
        )


async def _up(config: UpConfig, env: dict[str, str]) -> int:
    private_dir(config.run_dir)
    env["SESAME_SUPERVISOR_STATE"] = str(config.state_path())
    with contextlib.ExitStack() as cleanup:
        broker = None
        if not env.get("SESAME_MQTT_URL"):
            base = env.get("SESAME_WORKER_ID", "worker")
            broker = LocalBroker(
                config.run_dir, [f"{base}-{slot}" for slot in range(1, config.worker_count + 1)]
            )
            cleanup.callback(shutil.rmtree, broker.credentials.dir, True)  # its credentials go with it
            env["SESAME_MQTT_URL"] = broker.url("gateway").env_value()
        notify = await NotifyListener(config.run_dir / f"notify-{config.port}.sock").start()
        env["NOTIFY_SOCKET"] = str(notify.path)
        try:
            await _supervise(config, env, broker, notify)
        finally:
            notify.close()
            with contextlib.suppress(OSError):
                config.pid_path().unlink()
    log.info("up_stopped")
    return 0


async def _supervise(
    config: UpConfig, env: dict[str, str], broker: LocalBroker | None, notify: NotifyListener
) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # One broker, or a cluster's nodes; our own broker is read as `monitor`.
    mqtt_url = (
        MqttNodes.parse(env["SESAME_MQTT_URL"]) if broker is None else MqttNodes.of(broker.url("monitor"))
    )
    async with Supervisor(
        SupervisorCore(config.policy),
        mqtt_url=mqtt_url,
        state_path=config.state_path(),
        probe_timeout_s=config.probe_timeout_s,
        stop_timeout_s=config.stop_timeout_s,
        notify=notify,
    ) as sup:
        stack = _Stack(config, env, sup, broker)
        if broker is not None:
            sup.add(broker.spec)
            assert sup.link is not None
            await sup.link.wait_connected(30.0)  # workers and gateway would only retry meanwhile
        stack.start_workers()
        stack.start_gateway()
        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = loop.create_task(stack.reload(), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        config.pid_path().write_text(str(os.getpid()))
        log.info(
            "up_started",
            url=f"http://{config.host}:{config.port}/",
            broker=str(mqtt_url),
            listen_with=broker.listen_hint() if broker is not None else None,
            credentials=str(broker.credentials.dir) if broker is not None else None,
            workers=config.worker_count,
            pid=os.getpid(),
            pid_file=str(config.pid_path()),
        )
        try:
            await sup.run(stopping)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for task in reloads:
                task.cancel()
            log.info("up_stopping")
            stack.listener.close()
