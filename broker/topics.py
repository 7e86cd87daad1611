"""Every MQTT topic name, under one versioned root. Nothing else in the project spells a topic.

Jobs go to a per-worker topic chosen by the gateway (not a shared subscription): the gateway's
scheduler already knows which worker is ready and how deep its queue is, and failover needs to know
exactly which worker holds a job so that its death can be acted on at once. See docs/architecture.md.
"""

from __future__ import annotations

import re

from .errors import ProtocolError

ROOT = "sesame/v1"

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_id(value: str, what: str = "id") -> str:
    """Ids become topic levels, so they must not carry '/', '+', '#' or be empty."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ProtocolError(f"invalid {what}: must match [A-Za-z0-9_.-]{{1,64}}", code="bad_id")
    return value


def worker_heartbeat(worker_id: str) -> str:
    return f"{ROOT}/workers/{check_id(worker_id, 'worker_id')}/heartbeat"


def worker_status(worker_id: str) -> str:
    """Retained; the worker's MQTT last will sets it to offline."""
    return f"{ROOT}/workers/{check_id(worker_id, 'worker_id')}/status"


def worker_jobs(worker_id: str) -> str:
    return f"{ROOT}/workers/{check_id(worker_id, 'worker_id')}/jobs"


ALL_HEARTBEATS = f"{ROOT}/workers/+/heartbeat"
ALL_STATUSES = f"{ROOT}/workers/+/status"
CANCEL = f"{ROOT}/cancel"


def reply_root(gateway_id: str) -> str:
    return f"{ROOT}/replies/{check_id(gateway_id, 'gateway_id')}"


def job_events(reply_to: str, job_id: str) -> str:
    """JSON job events (ack, done, job_error) for one job."""
    return f"{reply_to}/{check_id(job_id, 'job_id')}/events"


def job_audio(reply_to: str, job_id: str) -> str:
    """Binary audio frames for one job."""
    return f"{reply_to}/{check_id(job_id, 'job_id')}/audio"


def all_replies(gateway_id: str) -> str:
    return f"{reply_root(gateway_id)}/#"


def session_text(session_id: str) -> str:
    """Text published here is spoken in the live session (an LLM service may publish directly)."""
    return f"{ROOT}/sessions/{check_id(session_id, 'session_id')}/text"


def session_events(session_id: str) -> str:
    return f"{ROOT}/sessions/{check_id(session_id, 'session_id')}/events"


def session_audio(session_id: str) -> str:
    return f"{ROOT}/sessions/{check_id(session_id, 'session_id')}/audio"


ALL_SESSION_TEXT = f"{ROOT}/sessions/+/text"

# MQTT-only sessions (docs/asyncapi.yaml): a publisher opens, feeds, flushes, cancels and closes a
# session on these; one gateway takes each open (a shared subscription) and claims it (retained).
SESSION_CONTROLS = ("open", "flush", "cancel", "close", "claim")
GATEWAYS_SHARE = "sesame-gateways"


def session_topic(session_id: str, kind: str) -> str:
    """``sesame/v1/sessions/{id}/{kind}`` for kind in SESSION_CONTROLS (or text/events/audio)."""
    return f"{ROOT}/sessions/{check_id(session_id, 'session_id')}/{kind}"


SHARED_SESSION_OPEN = f"$share/{GATEWAYS_SHARE}/{ROOT}/sessions/+/open"
ALL_SESSION_CLAIMS = f"{ROOT}/sessions/+/claim"
ALL_SESSION_FLUSH = f"{ROOT}/sessions/+/flush"
ALL_SESSION_CANCEL = f"{ROOT}/sessions/+/cancel"
ALL_SESSION_CLOSE = f"{ROOT}/sessions/+/close"


def session_kind_of(topic: str) -> str:
    """``sesame/v1/sessions/{id}/{kind}`` -> kind (the id is checked by ``session_id_of``)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/sessions":
        raise ProtocolError(f"not a session topic: {topic!r}", code="bad_topic")
    return parts[4]


def worker_id_of(topic: str) -> str:
    """``sesame/v1/workers/{id}/...`` -> id."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:3]) != f"{ROOT}/workers":
        raise ProtocolError(f"not a worker topic: {topic!r}", code="bad_topic")
    return check_id(parts[3], "worker_id")


def session_id_of(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/sessions":
        raise ProtocolError(f"not a session topic: {topic!r}", code="bad_topic")
    return check_id(parts[3], "session_id")


def reply_parts(topic: str) -> tuple[str, str]:
    """``{reply_root}/{job_id}/{events|audio}`` -> (job_id, kind)."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != f"{ROOT}/replies" or parts[5] not in ("events", "audio"):
        raise ProtocolError(f"not a reply topic: {topic!r}", code="bad_topic")
    return check_id(parts[4], "job_id"), parts[5]
