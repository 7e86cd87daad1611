"""The one Engine protocol every voice implements.

An engine takes text + voice and yields audio chunks (float32 mono in [-1, 1], at the sample rate
asked for). It either speaks or raises an ``EngineError`` subclass; it never yields silence as a
stand-in. Cancellation: the caller sets ``cancel``; the engine stops at the next point it can
and raises ``EngineCancelled``. Blocking work (Bark inference, file decoding) runs off the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from broker.audio import Samples
from broker.errors import EngineCancelled


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    text: str
    voice: str  # a voice name from the voice map ("maya")
    sample_rate: int = 24_000
    # Its listener needs the first audio now (a turn's first sentence): an engine that can trade CPU
    # for an earlier first audio does (Piper streams its first clause even beside another speaker).
    urgent: bool = False
    # Seconds from the engine's start until its listener needs the first audio (the audio before it
    # still playing; 0: now). Piper decodes in one piece what is ready by then, else in pieces.
    need_s: float = 0.0


@dataclass(frozen=True, slots=True)
class EngineChunk:
    samples: Samples
    sample_rate: int


@dataclass(slots=True)
class CancelToken:
    """Set from the event loop, read from inference threads; an engine awaiting something on the
    loop asks to be told (``on_cancel``) instead of polling."""

    event: threading.Event = field(default_factory=threading.Event)
    _callbacks: list[Callable[[], None]] = field(default_factory=list)

    def cancel(self) -> None:
        self.event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop, from ``cancel``) when cancelled; at once if it already is."""
        if self.cancelled:
            callback()
        else:
            self._callbacks.append(callback)

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self, message: str = "cancelled") -> None:
        """EngineCancelled if the job was cancelled: what an engine calls before it starts and
        between its chunks."""
        if self.cancelled:
            raise EngineCancelled(message)


@runtime_checkable
class Engine(Protocol):
    name: str  # "bark", "elevenlabs", "edge-tts", "espeak-ng"

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        """Yield audio chunks in order; raise EngineError on failure, EngineCancelled when cancelled."""
        ...
