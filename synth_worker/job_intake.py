"""How ``WorkerCore`` reads jobs: decoding, salvaging ids from bad payloads, and the start order."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from broker import topics
from broker.deadline_order import Waiting
from broker.deadline_order import start_order as deadline_start_order
from broker.errors import ProtocolError
from broker.messages import Job, decode_worker_message
from broker.wire import Message

M = TypeVar("M", bound=Message)


def start_order(
    queue: deque[Job],
    now: float = 0.0,
    need_at: Mapping[str, float] | None = None,
    served: Mapping[str, int] | None = None,
) -> list[Job]:
    """The queue in the order jobs should start (broker/deadline_order.py): the earliest playback
    need among the sessions' earliest queued jobs (a need already past, or none said, is now), ties
    round robin across sessions (``served``: when each last started a job), then the shortest text,
    then the earliest queued; so a session's jobs keep their own order. ``need_at``: job id -> when
    its listener needs it (this worker's clock)."""
    needs = need_at or {}
    waiting = [Waiting(j.session_id, needs.get(j.job_id, now), len(j.text), i) for i, j in enumerate(queue)]
    jobs = list(queue)
    return [jobs[i] for i in deadline_start_order(waiting, now, served or {})]


def decode_as(payload: bytes, cls: type[M]) -> M:
    message = decode_worker_message(payload)
    if not isinstance(message, cls):
        raise ProtocolError(f"expected a {cls.type!r} message, got {message.type!r}", code="unexpected_type")
    return message


def salvage_ids(payload: bytes) -> tuple[str | None, str | None]:
    """From a payload that failed to decode, a job_id and reply_to good enough to answer to."""
    try:
        data: Any = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    job_id, reply_to = data.get("job_id"), data.get("reply_to")
    if not isinstance(job_id, str) or not isinstance(reply_to, str):
        return None, None
    try:
        topics.check_id(job_id, "job_id")
    except ProtocolError:
        return None, None
    if not reply_to.startswith("sesame/") or any(c in reply_to for c in "+#") or len(reply_to) > 256:
        return job_id, None
    return job_id, reply_to


class JobOrder:
    """The worker queue's start order and what it needs: each queued job's need on this worker's
    clock (``need_in_s`` after it arrived) and when each session last started a job."""

    def __init__(self, max_sessions: int) -> None:
        self.need_at: dict[str, float] = {}  # queued job id -> when its listener needs it
        self.max_sessions = max_sessions
        self._served: dict[str, int] = {}
        self._starts = 0

    def queued(self, job: Job, now: float) -> None:
        self.need_at[job.job_id] = now + (job.need_in_s or 0.0)

    def forget(self, job_id: str) -> None:
        self.need_at.pop(job_id, None)

    def clear(self) -> None:
        self.need_at.clear()

    def order(self, queue: deque[Job], now: float) -> list[Job]:
        return start_order(queue, now, self.need_at, self._served)

    def last(self, queue: deque[Job], job: Job, now: float) -> Job:
        """Of a full queue and a newcomer (already ``queued``), the one to refuse: the job that
        would start last. A first sentence displaces another session's lookahead, never the
        reverse; a newcomer that starts last is itself refused."""
        return start_order(deque([*queue, job]), now, self.need_at, self._served)[-1]

    def started(self, job: Job, here: Iterable[Job]) -> None:
        """``job`` starts; ``here``: the jobs queued or running (sessions of no others are forgotten)."""
        self.forget(job.job_id)
        self._starts += 1
        self._served[job.session_id] = self._starts
        if len(self._served) > self.max_sessions:
            sessions = {j.session_id for j in here}
            self._served = {s: n for s, n in self._served.items() if s in sessions}
