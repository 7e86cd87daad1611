"""How ``WorkerCore`` reads jobs: decoding, salvaging ids from bad payloads, and the start order."""

from __future__ import annotations

import json
from collections import deque
from typing import Any, TypeVar

from broker import topics
from broker.errors import ProtocolError
from broker.messages import Job, decode_worker_message
from broker.wire import Message

M = TypeVar("M", bound=Message)


def start_order(queue: deque[Job]) -> list[Job]:
    """The queue in the order jobs should start: each time, the shortest text among the sessions'
    earliest queued jobs (ties: the earliest queued), so a session's jobs keep their own order."""
    rest = list(queue)
    order: list[Job] = []
    while rest:
        seen: set[str] = set()
        heads: list[int] = []
        for i, job in enumerate(rest):
            if job.session_id not in seen:
                seen.add(job.session_id)
                heads.append(i)
        order.append(rest.pop(min(heads, key=lambda i: (len(rest[i].text), i))))
    return order


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
