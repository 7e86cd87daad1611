"""Real processes for integration tests: started with env, their output read line by line, and
waited on by what they print (JSON log lines), never by sleeping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Proc:
    def __init__(self, args: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clients.cli", *args],
            cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"proc-log:{name}").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_for(
        self, predicate: Callable[[dict[str, object]], bool], timeout: float, what: str = "", since: int = 0
    ) -> dict[str, object]:
        """Block until a JSON log line (from line ``since`` on) matches, the process exits, or the
        timeout passes."""
        seen = since
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    seen += 1
                    if line.startswith("{"):
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue
                        if predicate(event):
                            return event  # type: ignore[no-any-return]
                if self.proc.poll() is not None and seen >= len(self.lines):
                    raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {what}:\n" + self.tail())
                if not self._cond.wait(timeout):
                    raise AssertionError(f"{self.name}: no {what} within {timeout}s:\n" + self.tail())

    def wait_events(self, event: str, n: int, timeout: float) -> list[dict[str, object]]:
        """Block until ``n`` log lines carry ``event``."""
        found: list[dict[str, object]] = []

        def count(e: dict[str, object]) -> bool:
            if e.get("event") == event:
                found.append(e)
            return len(found) >= n

        self.wait_for(count, timeout, f"{n} x {event}")
        return found

    def wait_event(self, event: str, timeout: float) -> dict[str, object]:
        return self.wait_for(lambda e: e.get("event") == event, timeout, event)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
