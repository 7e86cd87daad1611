"""A real service stack on loopback for benchmarks: mosquitto, the gateway process, worker processes.

The same start-up as the tests' ``Service`` (tests/conftest.py), kept here so benchmarks do not
import tests/: processes are started with their environment, their JSON log lines are read as they
come, and readiness is waited on by those lines, never by sleeping. Everything started is stopped
by ``close()`` (also on errors, as a context manager).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from broker.launcher import Mosquitto, free_port

REPO = Path(__file__).resolve().parent.parent
Event = dict[str, object]


class Proc:
    """``python -m clients.cli ARGS`` with env; its output kept line by line."""

    def __init__(self, args: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.started_at = time.monotonic()
        self.lines: list[tuple[float, str]] = []  # (monotonic time read, line)
        self._cond = threading.Condition()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clients.cli", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"log:{name}").start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, what: str) -> tuple[float, Event]:
        """Block until a JSON log line matches; returns (when it was read, the event)."""
        seen = 0
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for when, line in self.lines[seen:]:
                    seen += 1
                    if line.startswith("{"):
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue
                        if predicate(event):
                            return when, event
                if self.proc.poll() is not None and seen >= len(self.lines):
                    code = self.proc.returncode
                    raise RuntimeError(f"{self.name} exited ({code}) before {what}:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    raise RuntimeError(f"{self.name}: no {what} within {timeout}s:\n{self.tail()}")

    def events(self) -> list[Event]:
        out = []
        for _, line in list(self.lines):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def tail(self, n: int = 20) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


class Stack:
    """mosquitto + gateway (+ workers via ``start_worker``) on free loopback ports, configured as
    shipped (``broker.launcher``'s config, the product's MQTT client settings)."""

    def __init__(self, gateway_env: Mapping[str, str] | None = None) -> None:
        self.broker = Mosquitto().start()
        self.port = free_port()
        self.env = {"SESAME_MQTT_URL": str(self.broker.url), "SESAME_PORT": str(self.port)}
        self.workers: dict[str, Proc] = {}
        self.gateway: Proc | None = None
        try:
            self.gateway = Proc(["gateway"], {**self.env, **(gateway_env or {})}, "gateway")
            self.gateway.wait_for(lambda e: e.get("event") == "gateway_listening", 60, "gateway_listening")
        except BaseException:
            self.close()
            raise

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start_worker(
        self, worker_id: str, engine: str = "espeak-ng", timeout: float = 120.0, **env: str
    ) -> Proc:
        """Start a worker and wait until the gateway has seen it ready."""
        assert self.gateway is not None
        wenv = {
            **self.env,
            "SESAME_WORKER_ID": worker_id,
            "SESAME_ENGINE": engine,
            "SESAME_HEARTBEAT_INTERVAL_MS": "200",
            **env,
        }
        proc = Proc(["worker"], wenv, worker_id)
        self.workers[worker_id] = proc

        def up(e: Event) -> bool:
            mine = e.get("worker_id") == worker_id
            return e.get("event") == "worker_change" and mine and e.get("up") is True

        self.gateway.wait_for(up, timeout, f"{worker_id} ready")
        return proc

    def close(self) -> None:
        for proc in self.workers.values():
            proc.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.broker.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def machine() -> str:
    """The CPU model name and core count, as ``lscpu`` reports it (for result tables)."""
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} CPUs"
