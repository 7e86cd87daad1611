"""``sesame-voice up``: the whole service in the foreground, under one supervisor process.

This process runs no server itself: it supervises children (``sesame_voice.children``), each in a
process group of its own: a local mosquitto (unless SESAME_MQTT_URL is set), N workers and the
gateway. A child that exits is restarted with backoff; a worker silent on its heartbeats and a
gateway whose ``/health`` does not answer are killed and replaced (``sesame_voice.supervisor``).

Signals: SIGTERM or Ctrl-C stop everything (gateway, workers, broker, in that order) and exit 0;
a second one hurries the stop (every child gets SIGKILL at once) but still stops every child, and
both hold from the first moment (a SIGTERM during start-up stops what was started). SIGHUP (what
``sesame-voice reload`` sends) replaces the workers, each successor ready before its predecessor
drains (as many at once as SESAME_RELOAD_SURGE allows), and the gateway beside them, without
dropping a job. No child
outlives ``up``: each gets PR_SET_PDEATHSIG, and ``sesame_voice.reaper`` (started first, watching a
pipe from us) SIGKILLs the rest, e.g. the broker, whose PDEATHSIG its privilege drop clears.
The local broker is configured as production is (``broker/launcher.py``): anonymous clients
are refused; its generated credentials live in ``{run_dir}/broker-{port}`` (0700, files 0600), each
child gets only its own (the gateway ``gateway``, each worker a user named by its id, the supervisor
``monitor``), and ``up_started`` says how to listen with mosquitto_sub as ``listener``.
Configuration errors stop ``up`` with one line and exit 78 (EX_CONFIG), never a restart loop: the
gateway's settings are checked before any child starts (e.g. ``--host 0.0.0.0`` without a token),
and a child that exits 78 itself halts the supervisor. The pid is written to
``{run_dir}/up-{port}.pid`` and the supervisor's state (restarts by role and reason) to
``{run_dir}/supervisor-{port}.json``, which the gateway shows in ``/ready``.

The workers' engine: SESAME_ENGINE where set; else Bark when its weights are on this machine
(``--dev-model``, a SESAME_MODEL directory, or the model in the local Hugging Face cache); else
Piper, the offline neural voice, so a fresh machine runs a real worker path with a natural voice.
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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path

from broker import logs
from broker.credentials import private_dir
from broker.errors import EXIT_CONFIG, ConfigError
from broker.settings import Env, MqttNodes
from stream_server.config import GatewayConfig

from .capacity import default_workers, surge_setting, workers_setting
from .children import Supervisor
from .local_broker import LocalBroker
from .notify import NotifyListener
from .reaper import Reaper
from .reload_report import ReloadReport
from .stack import Stack, StackConfig
from .supervisor import Policy, SupervisorCore

log = logs.get("sesame.up")

DEV_MODEL_DIR = Path(".models/bark-dev")


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
    reload_surge: int | None = None  # None: auto (capacity.reload_surge)

    @classmethod
    def from_env(
        cls, env: dict[str, str], port: int | None, workers: int | None, host: str | None = None
    ) -> UpConfig:
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
            host=host if host is not None else e.str("SESAME_HOST", "127.0.0.1"),
            workers=workers if workers is not None else workers_setting(e),
            run_dir=Path(run_dir),
            policy=policy,
            probe_timeout_s=e.ms("SESAME_HEALTH_PROBE_TIMEOUT_MS", 2.0),
            stop_timeout_s=e.ms("SESAME_DRAIN_TIMEOUT_MS", 30.0) + 10.0,
            reload_ready_timeout_s=e.ms("SESAME_RELOAD_READY_TIMEOUT_MS", 120.0),
            reload_surge=surge_setting(e),
        )

    @property
    def worker_count(self) -> int:
        return 1 if self.workers is None else self.workers

    def pid_path(self) -> Path:
        return self.run_dir / f"up-{self.port}.pid"

    def state_path(self) -> Path:
        return self.run_dir / f"supervisor-{self.port}.json"

    def reload_report_path(self) -> Path:
        return self.run_dir / f"reload-{self.port}.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sesame-voice up", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="gateway port (SESAME_PORT, default 8000)")
    parser.add_argument("--host", default=None, help="gateway bind address (SESAME_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers (SESAME_WORKERS; default: sesame_voice/capacity.py)",
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
        config = UpConfig.from_env(env, args.port, args.workers, args.host)
        env["SESAME_PORT"], env["SESAME_HOST"] = str(config.port), config.host
        GatewayConfig.from_env(env)  # the gateway would refuse these settings: say so now, once
    except ConfigError as exc:
        return _config_error(str(exc))
    if args.dev_model:
        if not (DEV_MODEL_DIR / "config.json").exists():
            from synth_worker.devmodel import build_dev_model

            build_dev_model(DEV_MODEL_DIR)
        env["SESAME_MODEL"] = str(DEV_MODEL_DIR.resolve())
    if not env.get("SESAME_ENGINE"):
        env["SESAME_ENGINE"] = "bark" if _bark_weights_here(env) else "piper"
    if config.workers is None:
        config = replace(config, workers=default_workers(env["SESAME_ENGINE"], os.cpu_count() or 1))
    env["SESAME_WORKERS"] = str(config.workers)  # each worker's Piper threads divide the cores by it
    config.run_dir.mkdir(parents=True, exist_ok=True)
    reaper = Reaper(config.state_path())  # before any child: whatever happens to us, none outlives us
    try:
        code = asyncio.run(_up(config, env))
    except ConfigError as exc:
        code = _config_error(str(exc))
    reaper.done()  # every child was stopped by us (an exception skips this: the reaper stops them)
    return code


def _config_error(message: str) -> int:
    """One line on stderr, exit 78 (EX_CONFIG): nothing to restart, something to fix."""
    print(f"sesame-voice up: {message}", file=sys.stderr)
    return EXIT_CONFIG


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


class _Signals:
    """SIGTERM/SIGINT from the first moment on: the first stops ``up`` in order (drains), a second
    one hurries the stop (every child's process group gets SIGKILL now); SIGHUP reloads once the
    children run. Installed before anything starts, removed after the last child stopped."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.sup: Supervisor | None = None
        self.on_hup: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop, sig)
        self._loop.add_signal_handler(signal.SIGHUP, self._hup)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)

    def _stop(self, sig: int) -> None:
        if not self.stopping.is_set():
            log.info("up_stop_requested", signal=signal.Signals(sig).name)
            self.stopping.set()
            return
        log.warning("up_stop_hurried", signal=signal.Signals(sig).name)
        for proc in list(self.sup.procs.values()) if self.sup is not None else []:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # each child leads its own process group

    def _hup(self) -> None:
        if self.on_hup is None or self.stopping.is_set():
            log.warning("reload_ignored", reason="stopping" if self.stopping.is_set() else "starting")
            return
        self.on_hup()


async def _up(config: UpConfig, env: dict[str, str]) -> int:
    private_dir(config.run_dir)
    env["SESAME_SUPERVISOR_STATE"] = str(config.state_path())
    with _Signals() as signals, contextlib.ExitStack() as cleanup:
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
            halted = await _supervise(config, env, broker, notify, signals)
        finally:
            notify.close()
            with contextlib.suppress(OSError):
                config.pid_path().unlink()
    log.info("up_stopped")
    if halted is not None:
        name, code = halted
        return _config_error(f"{name} cannot run as configured (exit {code}, its error above): not restarted")
    return 0


async def _supervise(
    config: UpConfig,
    env: dict[str, str],
    broker: LocalBroker | None,
    notify: NotifyListener,
    signals: _Signals,
) -> tuple[str, int] | None:
    """Run the children until a stop; the child that could not run as configured, if one halted it."""
    loop = asyncio.get_running_loop()
    stopping = signals.stopping
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
        signals.sup = sup
        stack_config = StackConfig(
            config.host,
            config.port,
            config.worker_count,
            config.reload_ready_timeout_s,
            env["SESAME_ENGINE"],
            config.reload_surge,
        )
        stack = Stack(stack_config, env, sup, ReloadReport(config.reload_report_path()), broker)
        try:
            if broker is not None:
                sup.add(broker.spec)
                assert sup.link is not None
                # Workers and gateway would only retry meanwhile; a stop request ends the wait.
                await _first(sup.link.wait_connected(30.0), stopping.wait())
            if stopping.is_set():
                return sup.core.halted
            stack.start_workers()
            stack.start_gateway()
            reloads: set[asyncio.Task[None]] = set()

            def on_hup() -> None:
                task = loop.create_task(stack.reload(), name="reload")
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            signals.on_hup = on_hup
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
                for task in reloads:
                    task.cancel()
        finally:
            log.info("up_stopping")
            stack.listener.close()
    return sup.core.halted


async def _first(*waits: Coroutine[object, object, object]) -> None:
    """Await whichever finishes first; cancel the others (an error of the first is raised)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    for task in done:
        task.result()
