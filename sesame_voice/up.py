"""``sesame-voice up``: the whole service in the foreground: broker, worker(s), gateway.

Starts a local mosquitto unless SESAME_MQTT_URL is set, N workers as child processes, and the
gateway in this process. Ctrl-C or SIGTERM stops everything it started, in reverse order.

The workers' engine: SESAME_ENGINE where set; else Bark when its weights are on this machine
(``--dev-model``, a SESAME_MODEL directory, or the model in the local Hugging Face cache); else
Piper, the offline neural voice, so a fresh machine runs a real worker path with a natural voice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from broker import logs
from broker.launcher import Mosquitto
from broker.settings import MqttUrl
from stream_server.config import GatewayConfig
from stream_server.main import serve

log = logs.get("sesame.up")

DEV_MODEL_DIR = Path(".models/bark-dev")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sesame-voice up", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="gateway port (SESAME_PORT, default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SESAME_WORKERS", "1")),
        help="workers to start (SESAME_WORKERS, default 1)",
    )
    parser.add_argument(
        "--dev-model",
        action="store_true",
        help=f"build (once) and use the small random-weight Bark checkpoint in {DEV_MODEL_DIR}: "
        "noise, but every stage runs",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.port is not None:
        env["SESAME_PORT"] = str(args.port)
    logs.configure(env.get("LOG_LEVEL", "INFO"))

    broker: Mosquitto | None = None
    if not env.get("SESAME_MQTT_URL"):
        broker = Mosquitto().start()
        env["SESAME_MQTT_URL"] = str(broker.url)
    if args.dev_model:
        if not (DEV_MODEL_DIR / "config.json").exists():
            from synth_worker.devmodel import build_dev_model

            build_dev_model(DEV_MODEL_DIR)
        env["SESAME_MODEL"] = str(DEV_MODEL_DIR.resolve())
    if not env.get("SESAME_ENGINE"):
        env["SESAME_ENGINE"] = "bark" if _bark_weights_here(env) else "piper"

    workers: list[subprocess.Popen[bytes]] = []
    try:
        config = GatewayConfig.from_env(env)
        for i in range(args.workers):
            wenv = {**env, "SESAME_WORKER_ID": env.get("SESAME_WORKER_ID", "worker") + f"-{i + 1}"}
            workers.append(subprocess.Popen([sys.executable, "-m", "sesame_voice.cli", "worker"], env=wenv))
        print(
            f"\n  sesame-voice is starting\n  open      http://{config.host}:{config.port}/\n"
            f"  broker    {MqttUrl.parse(env['SESAME_MQTT_URL'])}\n  workers   {len(workers)} "
            f"{env['SESAME_ENGINE']} "
            f"(pids {' '.join(str(w.pid) for w in workers)})\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        asyncio.run(serve(config))
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
        if broker is not None:
            broker.close()
    return 0


def _bark_weights_here(env: dict[str, str]) -> bool:
    """Whether SESAME_MODEL is a checkpoint on this machine (a directory, or in the HF cache)."""
    model = env.get("SESAME_MODEL") or "suno/bark-small"
    if Path(model).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json", cache_dir=env.get("SESAME_MODEL_CACHE") or None)
    except ValueError:  # not a hub id either (a path that does not exist)
        return False
    return isinstance(cached, str)
