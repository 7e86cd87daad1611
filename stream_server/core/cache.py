"""Sentence cache: audio the primary voice already made, keyed by (voice, rate, text). Pure.

Memory LRU bounded in bytes with a TTL (the plan's SESAME_CACHE_TTL). Only the primary tier's audio
is cached, so a cached sentence sounds like Bark, never like a fallback voice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedAudio:
    pcm: bytes
    engine: str
    stored_at: float


def cache_key(voice: str, sample_rate: int, text: str) -> tuple[str, int, str]:
    return (voice, sample_rate, " ".join(text.split()))


class SentenceCache:
    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._items: OrderedDict[tuple[str, int, str], CachedAudio] = OrderedDict()
        self.bytes = 0

    def get(self, key: tuple[str, int, str], now: float) -> CachedAudio | None:
        item = self._items.get(key)
        if item is None:
            return None
        if now - item.stored_at > self.ttl_s:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, int, str], pcm: bytes, engine: str, now: float) -> None:
        if len(pcm) > self.max_bytes or not pcm:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = CachedAudio(pcm, engine, now)
        self.bytes += len(pcm)
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[str, int, str]) -> None:
        item = self._items.pop(key)
        self.bytes -= len(item.pcm)

    def __len__(self) -> int:
        return len(self._items)
