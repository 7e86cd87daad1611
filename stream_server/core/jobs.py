"""A worker job's audio against its ``done`` count, and the primary voice's audio kept for the cache. Pure.

A worker's audio and its events travel on two MQTT topics, so ``done`` (which carries how many
chunks were sent) can overtake the last chunks. The tracker holds the ``done`` back until every
chunk is here. Only jobs the gateway sent are tracked: a chunk or ``done`` for any other job id (a
job already finished, cancelled or failed over) is ignored, so late traffic holds no memory.

Each job remembers the worker it was sent to. A reply's topic names the worker that sent it (the
broker's ACL lets a worker write only under its own id), and ``sender`` tells a reply from the
assigned worker from one sent by another (forged: dropped, counted, and reported once per worker)
or for a job not in flight here (late, or a local tier's: dropped quietly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Sender(Enum):
    ASSIGNED = "assigned"  # the worker the job was sent to: use it
    UNKNOWN = "unknown"  # no worker job in flight by that id: late traffic, ignored
    WRONG = "wrong"  # another worker answered a job in flight: forged, dropped and counted
    WRONG_FIRST = "wrong_first"  # the same, the first time from this worker: also logged


@dataclass(slots=True)
class _Job:
    worker_id: str
    chunks: int = 0
    done_at: int | None = None  # the chunk count ``done`` announced, while waiting for them
    pcm: list[bytes] = field(default_factory=list)


class JobTracker:
    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._reported: set[str] = set()  # workers whose forged replies were logged already

    def sent(self, job_id: str, worker_id: str) -> None:
        """The gateway sent ``job_id`` to ``worker_id``."""
        self._jobs[job_id] = _Job(worker_id)

    def sender(self, job_id: str, worker_id: str) -> Sender:
        """Who a reply for ``job_id`` from ``worker_id`` (its topic's worker level) comes from."""
        job = self._jobs.get(job_id)
        if job is None:
            return Sender.UNKNOWN
        if job.worker_id == worker_id:
            return Sender.ASSIGNED
        if worker_id in self._reported or len(self._reported) >= 1024:
            return Sender.WRONG
        self._reported.add(worker_id)
        return Sender.WRONG_FIRST

    def chunk(self, job_id: str) -> bool:
        """A worker's audio chunk arrived. True when it completes a ``done`` that was waiting."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.chunks += 1
        return job.done_at is not None and job.chunks >= job.done_at

    def keep(self, job_id: str, pcm: bytes) -> None:
        """Audio of ``job_id`` that reached the listener: kept for the cache."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.pcm.append(pcm)

    def done(self, job_id: str, chunks: int) -> bool:
        """The worker says it sent ``chunks`` chunks. True when the job is complete now."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.chunks >= chunks:
            return True
        job.done_at = chunks
        return False

    def finish(self, job_id: str) -> bytes:
        """The job completed: its kept audio (empty if none), and it is forgotten."""
        job = self._jobs.pop(job_id, None)
        return b"".join(job.pcm) if job is not None else b""

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._jobs)
