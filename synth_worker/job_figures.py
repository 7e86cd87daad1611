"""``WorkerCore``'s figures: job counters and the measured real-time factor."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RTF_WINDOW = 20  # jobs the reported real-time factor is measured over


@dataclass(slots=True)
class Counters:
    accepted: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    rejected: int = 0  # overloaded, draining, unavailable, too long
    duplicates: int = 0
    bad_messages: int = 0


@dataclass(slots=True)
class Rtf:
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RTF_WINDOW))

    def add(self, compute_s: float, audio_s: float) -> None:
        if audio_s > 0 and compute_s >= 0:
            self.samples.append((compute_s, audio_s))

    @property
    def value(self) -> float:
        audio = sum(a for _, a in self.samples)
        return sum(c for c, _ in self.samples) / audio if audio > 0 else 0.0
