"""Phrase preloading: the common phrases, spoken by the primary voice into the cache. Pure.

Once, when the first worker is ready, the configured phrases are queued. One is handed out at a
time, and only while nothing else is being synthesized (the caller says whether the scheduler is
busy), so preloading never makes a listener wait. A phrase already in the cache is skipped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from stream_server.core.actions import Sentence
from stream_server.core.cache import SentenceCache, cache_key

PRELOAD_SESSION = "preload"


@dataclass(frozen=True, slots=True)
class Preload:
    """Submit this background sentence to the scheduler."""

    sentence: Sentence


class Preloader:
    def __init__(self, phrases: tuple[str, ...], voice: str, cache: SentenceCache | None) -> None:
        self.phrases = phrases
        self.voice = voice
        self.cache = cache
        self.planned = False
        self._queue: deque[Sentence] = deque()

    def worker_up(self) -> None:
        """A worker became ready: the first time, queue the phrases."""
        if self.planned or self.cache is None:
            return
        self.planned = True
        self._queue.extend(
            Sentence(PRELOAD_SESSION, 0, seq, text, self.voice, background=True)
            for seq, text in enumerate(self.phrases)
        )

    def step(self, busy: bool, now: float) -> list[Preload]:
        """The next phrase to make, if the gateway is idle (at most one)."""
        if busy or self.cache is None:
            return []
        while self._queue:
            s = self._queue.popleft()
            if self.cache.get(cache_key(s.voice, s.sample_rate, s.text), now) is None:
                return [Preload(s)]
        return []

    @property
    def pending(self) -> int:
        return len(self._queue)
