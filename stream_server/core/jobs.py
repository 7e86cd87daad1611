"""A worker job's audio against its ``done`` count, and the primary voice's audio kept for the cache. Pure.

A worker's audio and its events travel on two MQTT topics, so ``done`` (which carries how many
chunks were sent) can overtake the last chunks. The tracker holds the ``done`` back until every
chunk is here. Only jobs the gateway sent are tracked: a chunk or ``done`` for any other job id (a
job already finished, cancelled or failed over) is ignored, so late traffic holds no memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Job:
    chunks: int = 0
    done_at: int | None = None  # the chunk count ``done`` announced, while waiting for them
    pcm: list[bytes] = field(default_factory=list)


class JobTracker:
    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}

    def sent(self, job_id: str) -> None:
        """The gateway sent ``job_id`` to a worker."""
        self._jobs[job_id] = _Job()

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
