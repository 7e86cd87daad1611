"""What the scheduler decides, as values: the sentence it places and the actions it returns. Pure.

The hub (stream_server/hub/hub.py) is the one place these are carried out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from stream_server.core.workers import WorkerChange

WORKERS = "workers"


@dataclass(frozen=True, slots=True)
class Sentence:
    session_id: str
    turn: int
    seq: int
    text: str
    voice: str
    sample_rate: int = 24_000  # of the audio the session wants (jobs, local engines, cache key)
    # Background work (phrase preloading for the cache): only the primary voice may speak it,
    # never a fallback tier, and nobody is waiting for it.
    background: bool = False
    # When its listener needs its first audio (the gateway's clock): when the audio sent before it
    # runs out at real-time playback (stream_server/core/playback.py). 0: now (a first sentence).
    need_at: float = 0.0


class Cause(Enum):
    """Why an attempt failed, as far as failover cares (the reason string is only reported)."""

    ENGINE = "engine"  # the engine or worker failed it, or it timed out: exclude and cool down
    WORKER_GONE = "worker_gone"  # the worker died or stopped taking jobs: exclude, no cool-down
    BROKER = "broker"  # the broker could not carry the job: not the worker's fault
    BUSY = "busy"  # a capped tier could not start it in time, a worker not meet its need: no cool-down


# Actions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendJob:
    job_id: str
    worker_id: str
    sentence: Sentence
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class RunLocal:
    job_id: str
    tier: str
    sentence: Sentence


@dataclass(frozen=True, slots=True)
class CancelJob:
    job_id: str
    tier: str
    worker_id: str | None
    session_id: str


@dataclass(frozen=True, slots=True)
class FailedOver:
    sentence: Sentence
    from_engine: str
    to_engine: str
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    sentence: Sentence
    job_id: str
    engine: str
    tier: str
    first_audio_s: float | None


@dataclass(frozen=True, slots=True)
class GiveUp:
    sentence: Sentence
    reason: str


@dataclass(frozen=True, slots=True)
class TierChanged:
    tier: str
    available: bool
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerChanged:
    change: WorkerChange


@dataclass(frozen=True, slots=True)
class ProbeTier:
    tier: str


Action = (
    SendJob | RunLocal | CancelJob | FailedOver | Completed | GiveUp | TierChanged | WorkerChanged | ProbeTier
)
