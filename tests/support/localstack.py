"""A real service stack on loopback: mosquitto, the gateway process, worker processes.

Used by the integration tests (tests/conftest.py) and the benchmarks (bench/): processes are started
with their environment, their JSON log lines are read as they come, and readiness is waited on by
those lines, never by sleeping. Everything a ``Stack`` started is stopped by ``close()`` (also on
errors, as a context manager); a broker passed in stays the caller's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from broker.launcher import Mosquitto, stop_process
from stream_server.http.listen import listening_socket

REPO = Path(__file__).resolve().parents[2]
Event = dict[str, object]


class StackError(RuntimeError):
    """A process exited or did not say what was waited for in time (its log tail is attached)."""


class Proc:
    """``python -m sesame_voice.cli ARGS`` with env; its output kept line by line, with when each was read."""

    def __init__(self, args: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.started_at = time.monotonic()
        self.lines: list[str] = []
        self.read_at: list[float] = []  # monotonic time each line was read
        self._cond = threading.Condition()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", **env}
        listen_fd = full_env.get("SESAME_LISTEN_FD")  # a gateway's socket, made by its Stack
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sesame_voice.cli", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=(int(listen_fd),) if listen_fd else (),
            # A session of its own, as ``up`` starts each child (sesame_voice/children.py): the
            # kernel's autogroups then schedule the stack's processes as in production.
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"log:{name}").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.read_at.append(time.monotonic())
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float, what: str = "", since: int = 0
    ) -> Event:
        """Block until a JSON log line (from line ``since`` on) matches, the process exits, or the
        timeout passes."""
        seen = since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    seen += 1
                    event = _parse(line)
                    if event is not None and predicate(event):
                        return event
                if self.proc.poll() is not None and seen >= len(self.lines):
                    code = self.proc.returncode
                    raise StackError(f"{self.name} exited ({code}) before {what}:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    raise StackError(f"{self.name}: no {what} within {timeout}s:\n{self.tail()}")

    def wait_event(self, event: str, timeout: float) -> Event:
        return self.wait_for(lambda e: e.get("event") == event, timeout, event)

    def wait_events(self, event: str, n: int, timeout: float) -> list[Event]:
        """Block until ``n`` log lines carry ``event``."""
        found: list[Event] = []

        def count(e: Event) -> bool:
            if e.get("event") == event:
                found.append(e)
            return len(found) >= n

        self.wait_for(count, timeout, f"{n} x {event}")
        return found

    def events(self) -> list[Event]:
        return [e for e in map(_parse, list(self.lines)) if e is not None]

    def timed_events(self) -> list[tuple[float, Event]]:
        """(when read, event) for every JSON log line so far."""
        out = []
        for when, line in zip(list(self.read_at), list(self.lines), strict=False):
            event = _parse(line)
            if event is not None:
                out.append((when, event))
        return out

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGCONT)  # a frozen (SIGSTOP) process cannot handle SIGTERM
        stop_process(self.proc, timeout)


def _parse(line: str) -> Event | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class _SigtermAsInterrupt:
    """While a stack is up, SIGTERM to its owner acts as Ctrl-C: the stack's processes run in
    sessions of their own (as ``up``'s do), so neither reaches them, and an interrupt unwinds the
    ``with`` blocks and fixtures that close them. Python's default for SIGTERM ends the process
    with no unwinding: a bench killed so left its broker, gateway and workers running. Only the
    main thread may set a handler, and one the caller set is left alone."""

    def __init__(self) -> None:
        self._stacks = 0
        self._installed = False

    def enter(self) -> None:
        self._stacks += 1
        first = self._stacks == 1 and threading.current_thread() is threading.main_thread()
        if first and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            self._installed = True

    def leave(self) -> None:
        self._stacks -= 1
        if self._stacks == 0 and self._installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._installed = False


_sigterm = _SigtermAsInterrupt()


class Stack:
    """mosquitto + gateway (+ workers via ``start_worker``) on free loopback ports, configured as
    shipped. ``broker``: use this one (and leave it running) instead of starting one.
    ``model_dir``: the Bark checkpoint Bark workers load."""

    def __init__(
        self,
        gateway_env: Mapping[str, str] | None = None,
        *,
        broker: Mosquitto | None = None,
        model_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        _sigterm.enter()  # left by close(), which every way out of here calls
        self._closed = False
        self._own_broker = broker is None
        self.model_dir = model_dir
        self.start_timeout = start_timeout
        self.workers: dict[str, Proc] = {}
        self._state: tempfile.TemporaryDirectory[str] | None = None
        self.gateway: Proc
        try:
            self.broker = broker if broker is not None else Mosquitto().start()
            # The gateway's listening socket is made here and inherited, as `up` does
            # (SESAME_LISTEN_FD): a port picked free and bound later by the gateway could be taken
            # meanwhile by any connection's ephemeral port (make test saw "Address already in use").
            self._listener = listening_socket("127.0.0.1", 0, {})
            self.port = self._listener.getsockname()[1]
            # Each process gets its own broker user (broker/launcher.py): the gateway its role's.
            self.env = {
                "SESAME_MQTT_URL": self.broker.url_for("gateway").env_value(),
                "SESAME_PORT": str(self.port),
            }
            # A stack keeps its uptime history (SESAME_STATE_DIR) to itself unless told where.
            if "SESAME_STATE_DIR" not in (gateway_env or {}):
                self._state = tempfile.TemporaryDirectory(prefix="sesame-state-")
                self.env["SESAME_STATE_DIR"] = self._state.name
            self.gateway = Proc(["gateway"], {**self.own_gateway_env, **(gateway_env or {})}, "gateway")
            self.gateway.wait_event("gateway_listening", start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def own_gateway_env(self) -> dict[str, str]:
        """The environment of this stack's gateway: ``env`` and the listening socket to inherit
        (a gateway started again on the stack's port passes it too)."""
        return {**self.env, "SESAME_LISTEN_FD": str(self._listener.fileno())}

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start_worker(
        self, worker_id: str, engine: str = "bark", timeout: float | None = None, **env: str
    ) -> Proc:
        """Start a worker and wait until the gateway has seen it ready."""
        wenv = {
            **self.env,
            "SESAME_WORKER_ID": worker_id,
            "SESAME_MQTT_URL": self.broker.url_for(worker_id).env_value(),
            "SESAME_ENGINE": engine,
            "SESAME_HEARTBEAT_INTERVAL_MS": "200",
            # Random weights can sample Bark's end token early; seed 1 gives full-length audio.
            "SESAME_SEED": "1",
            **env,
        }
        if engine == "bark" and self.model_dir is not None:
            wenv.setdefault("SESAME_MODEL", str(self.model_dir))
        if engine == "bark":
            # The random-weight dev checkpoint on a shared CPU is slower than real time: by the
            # deadline rule it would refuse most jobs as late (overloaded), and tests that ask
            # which worker spoke would see espeak-ng. That rule is tested on its own
            # (test_job_deadline, test_closest_voice); these tests take every job.
            wenv.setdefault("SESAME_MAX_LATE_MS", "3600000")
        proc = Proc(["worker"], wenv, worker_id)
        self.workers[worker_id] = proc

        def up(e: Event) -> bool:
            return (
                e.get("event") == "worker_change" and e.get("worker_id") == worker_id and e.get("up") is True
            )

        self.gateway.wait_for(up, timeout or 2 * self.start_timeout, f"{worker_id} ready")
        return proc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stop_all()
        finally:
            _sigterm.leave()

    def _stop_all(self) -> None:
        for proc in self.workers.values():
            proc.stop()
        gateway = getattr(self, "gateway", None)
        if gateway is not None:
            gateway.stop()
        if self._own_broker and hasattr(self, "broker"):
            self.broker.close()
        if hasattr(self, "_listener"):
            self._listener.close()
        if self._state is not None:
            self._state.cleanup()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
