"""When the worker (re)loads its model: a pure core with a timer (no clock, no I/O).

The first load is due at once (``start(now)``). A load that fails is tried again ``retry_s``
(SESAME_MODEL_RETRY_MS) later, for ever, so a worker whose model is not there yet becomes ready
when it appears, with no restart; ``retry_s <= 0`` gives up after the first failure (the worker
stays ``unavailable``). A job that finds the loaded engine unusable (``unusable(now)``) makes a new
load due at once. One load at a time: nothing is due while one runs.

``next_deadline()`` says when ``handle_timer(now)`` answers the next ``Load``; ``loaded()`` and
``failed(now)`` say how it went. The worker's deadline task drives it (``worker/process.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Load:
    attempt: int  # 1 for the first try since the model was last loaded (or never)


class ModelRetry:
    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self.attempt = 0
        self.loading = False
        self.gave_up = False
        self._due: float | None = None

    def start(self, now: float) -> None:
        self._due = now

    def next_deadline(self) -> float | None:
        return self._due

    def handle_timer(self, now: float) -> list[Load]:
        if self._due is None or now < self._due:
            return []
        self._due = None
        self.attempt += 1
        self.loading = True
        return [Load(self.attempt)]

    def loaded(self) -> None:
        self.loading, self.attempt = False, 0

    def failed(self, now: float) -> float | None:
        """The load failed: when it is tried again (None: never)."""
        self.loading = False
        if self.retry_s <= 0:
            self.gave_up = True
            return None
        self._due = now + self.retry_s
        return self._due

    def unusable(self, now: float) -> None:
        """A job found the engine unusable: load again at once (unless a load is due or runs)."""
        if not self.loading and self._due is None and not self.gave_up:
            self._due = now
