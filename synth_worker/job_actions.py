"""What ``WorkerCore`` hands back for its adapter to carry out."""

from __future__ import annotations

from dataclasses import dataclass

from broker.messages import Job
from broker.wire import Message


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    message: Message
    qos: int = 1


@dataclass(frozen=True, slots=True)
class StartJob:
    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Stop:
    job_id: str


Action = Send | StartJob | Stop
