"""``sesame-voice worker``: run one synthesis worker.

Settings come from the environment (see ``synth_worker.config``); flags override them. Exit
status: 0 after a clean drain (SIGTERM/SIGINT), 2 for unusable settings, 70 when a job was stuck
in the engine (the supervisor, systemd or compose starts a fresh process).

``--check-health`` does not run a worker: it reads the running worker's SESAME_HEALTH_FILE and
exits 0 (alive) or 1 (stale, missing, unavailable), for container health checks.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from broker import logs
from broker.errors import EXIT_CONFIG, ConfigError
from broker.settings import MqttNodes

from .config import ENGINES, WorkerConfig, parse_speaker


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sesame-voice worker",
        description="Run a synthesis worker: takes jobs over MQTT, streams audio back, heartbeats.",
    )
    p.add_argument("--worker-id", help="SESAME_WORKER_ID")
    p.add_argument("--mqtt-url", help="SESAME_MQTT_URL (mqtt://host:port, or several comma-separated)")
    p.add_argument("--engine", choices=ENGINES, help="SESAME_ENGINE")
    p.add_argument("--model", help="SESAME_MODEL: checkpoint directory or cached hub id")
    p.add_argument("--piper-voice", help="SESAME_PIPER_VOICE: a Piper .onnx model (engine piper)")
    p.add_argument("--model-cache", help="SESAME_MODEL_CACHE")
    p.add_argument("--speaker-id", help="SESAME_SPEAKER_ID: Bark speaker N or a preset name")
    p.add_argument("--temperature", type=float, help="SESAME_TEMPERATURE")
    p.add_argument("--max-length", type=int, help="SESAME_MAX_LENGTH (characters per job)")
    p.add_argument(
        "--preload", action=argparse.BooleanOptionalAction, default=None, help="SESAME_PRELOAD_MODELS"
    )
    p.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=None, help="SESAME_WARMUP_ON_START"
    )
    p.add_argument("--heartbeat-interval-ms", type=float, help="SESAME_HEARTBEAT_INTERVAL_MS")
    p.add_argument("--max-queue", type=int, help="SESAME_MAX_QUEUE")
    p.add_argument("--max-batch", type=int, help="SESAME_MAX_BATCH")
    p.add_argument("--semantic-max-tokens", type=int, help="SESAME_SEMANTIC_MAX_TOKENS")
    p.add_argument("--device", help="SESAME_DEVICE: auto, cpu, cuda")
    p.add_argument("--log-level", help="LOG_LEVEL")
    p.add_argument("--health-file", help="SESAME_HEALTH_FILE")
    p.add_argument(
        "--check-health", action="store_true", help="check the running worker's health file and exit"
    )
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "worker_id": args.worker_id,
        "mqtt_url": MqttNodes.parse(args.mqtt_url) if args.mqtt_url else None,
        "engine": args.engine,
        "model": args.model,
        "piper_voice": args.piper_voice,
        "model_cache": args.model_cache,
        "speaker_id": parse_speaker(args.speaker_id),
        "temperature": args.temperature,
        "max_length": args.max_length,
        "preload_models": args.preload,
        "warmup_on_start": args.warmup,
        "heartbeat_interval_s": None
        if args.heartbeat_interval_ms is None
        else args.heartbeat_interval_ms / 1000.0,
        "max_queue": args.max_queue,
        "max_batch": args.max_batch,
        "semantic_max_tokens": args.semantic_max_tokens,
        "device": args.device,
        "log_level": args.log_level,
        "health_file": args.health_file,
    }


def check_health(path: str | None) -> int:
    from .health import check

    if not path:
        print("no health file: set SESAME_HEALTH_FILE or --health-file", file=sys.stderr)
        return 1
    result = check(Path(path), time.time())
    print(result.reason, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.check_health:
        return check_health(args.health_file or os.environ.get("SESAME_HEALTH_FILE"))
    try:
        config = WorkerConfig.from_env(os.environ, **_overrides(args))
    except ConfigError as exc:
        logs.configure(os.environ.get("LOG_LEVEL", "info"))
        logs.get("sesame.worker").error("bad_config", error=str(exc))
        return EXIT_CONFIG
    logs.configure(config.log_level)
    structlog.contextvars.bind_contextvars(worker_id=config.worker_id)

    from .worker.process import EXIT_STUCK, run_worker, worker_engine

    try:
        engine = worker_engine(config)
    except ConfigError as exc:
        logs.get("sesame.worker").error("bad_config", error=str(exc))
        return EXIT_CONFIG
    # SIGUSR1 writes every thread's stack to stderr: what `up` asks for before it SIGKILLs a
    # drained worker that did not exit within its bound (sesame_voice.children.Supervisor.retire).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    code = asyncio.run(run_worker(config, engine))
    held = held_threads()
    if code == EXIT_STUCK or held:
        # A stuck inference thread holds the engine; any other thread still running would hold the
        # interpreter's exit (it joins them) after the worker is done: nothing is left to clean up.
        if held:
            logs.get("sesame.worker").warning("worker_exit_held", threads=held)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def held_threads() -> list[str]:
    """Threads that would hold the interpreter's exit: alive, not daemons (a ThreadPoolExecutor's
    too), each with where it is."""
    deadline = time.monotonic() + 1.0  # an idle executor thread ends on its own in a moment
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    frames = sys._current_frames()
    held = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon or not thread.is_alive():
            continue
        frame = frames.get(thread.ident or -1)
        where = "" if frame is None else f" at {frame.f_code.co_filename}:{frame.f_lineno}"
        held.append(f"{thread.name}{where}")
    return held
