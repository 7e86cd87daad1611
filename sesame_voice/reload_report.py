"""A rolling reload's progress, written by ``up`` and followed by ``sesame-voice reload``.

``up`` writes ``{run_dir}/reload-{port}.json`` atomically at each step of a reload: its number (one
more than the last), when it started, the steps so far (seconds since the start, and what happened)
and, at the end, ``done`` and ``ok``. ``sesame-voice reload`` notes the number before it sends
SIGHUP, then follows the file and prints each new step until the reload it started is done.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(slots=True)
class Report:
    number: int = 0
    started_at: float = 0.0  # wall clock (time.time())
    steps: list[tuple[float, str]] = field(default_factory=list)
    done: bool = False
    ok: bool = False

    @classmethod
    def read(cls, path: Path) -> Report | None:
        """The report in ``path``; None when there is none (or it cannot be read)."""
        try:
            data = json.loads(path.read_text())
            steps = [(float(at), str(text)) for at, text in data["steps"]]
            return cls(
                int(data["number"]), float(data["started_at"]), steps, bool(data["done"]), bool(data["ok"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


class ReloadReport:
    """``up``'s side: one reload at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        last = Report.read(path)
        self.report = Report(number=0 if last is None else last.number)
        self._t0 = time.monotonic()

    def begin(self, text: str) -> None:
        self.report = Report(number=self.report.number + 1, started_at=time.time())
        self._t0 = time.monotonic()
        self.step(text)

    def step(self, text: str) -> None:
        self.report.steps.append((round(time.monotonic() - self._t0, 2), text))
        self._write()

    def finish(self, ok: bool, text: str) -> None:
        self.report.done, self.report.ok = True, ok
        self.step(text)

    @property
    def elapsed_s(self) -> float:
        return round(time.monotonic() - self._t0, 2)

    def _write(self) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.report)))
            tmp.replace(self.path)
        except OSError:
            pass  # the reload goes on; only its report is missing
