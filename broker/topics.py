"""Every MQTT topic name, under one versioned root. Nothing else in the project spells a topic.

Jobs go to a per-worker topic chosen by the gateway (not a shared subscription): the gateway's
scheduler already knows which worker is ready and how deep its queue is, and failover needs to know
exactly which worker holds a job so that its death can be acted on at once. See docs/architecture.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import ProtocolError

ROOT = "sesame/v1"

_ID_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_ID = re.compile(_ID_PATTERN)  # whole: fullmatch ("$" would let a final newline by)


def check_id(value: str, what: str = "id") -> str:
    """Ids become topic levels, so they must not carry '/', '+', '#' or be empty."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ProtocolError(f"invalid {what}: must match {_ID_PATTERN}", code="bad_id")
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


def reply_to(gateway_id: str, worker_id: str) -> str:
    """Where ``worker_id`` answers this gateway's jobs: the worker id is a level of the topic, so
    the broker's ACL (a worker writes only ``replies/+/{its user}/#``) authenticates each reply."""
    return f"{reply_root(gateway_id)}/{check_id(worker_id, 'worker_id')}"


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


ALL_SESSION_OPEN = f"{ROOT}/sessions/+/open"  # a broker without shared subscriptions: every gateway
SHARED_SESSION_OPEN = f"$share/{GATEWAYS_SHARE}/{ALL_SESSION_OPEN}"
ALL_SESSION_CLAIMS = f"{ROOT}/sessions/+/claim"
ALL_SESSION_FLUSH = f"{ROOT}/sessions/+/flush"
ALL_SESSION_CANCEL = f"{ROOT}/sessions/+/cancel"
ALL_SESSION_CLOSE = f"{ROOT}/sessions/+/close"


# ---- parsing: a topic string in, a typed value out ---------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerTopic:
    """``sesame/v1/workers/{worker_id}/{heartbeat|status|jobs}``"""

    worker_id: str
    kind: Literal["heartbeat", "status", "jobs"]


@dataclass(frozen=True, slots=True)
class ReplyTopic:
    """``sesame/v1/replies/{gateway_id}/{worker_id}/{job_id}/{events|audio}``"""

    gateway_id: str
    worker_id: str
    job_id: str
    kind: Literal["events", "audio"]


SessionKind = Literal["text", "events", "audio", "open", "flush", "cancel", "close", "claim"]


@dataclass(frozen=True, slots=True)
class SessionTopic:
    """``sesame/v1/sessions/{session_id}/{text|events|audio|open|flush|cancel|close|claim}``"""

    session_id: str
    kind: SessionKind


@dataclass(frozen=True, slots=True)
class CancelTopic:
    """``sesame/v1/cancel``"""


Topic = WorkerTopic | ReplyTopic | SessionTopic | CancelTopic

_WORKER_KINDS: dict[str, Literal["heartbeat", "status", "jobs"]] = {
    "heartbeat": "heartbeat",
    "status": "status",
    "jobs": "jobs",
}
_REPLY_KINDS: dict[str, Literal["events", "audio"]] = {"events": "events", "audio": "audio"}
_SESSION_KINDS: dict[str, SessionKind] = {
    "text": "text",
    "events": "events",
    "audio": "audio",
    "open": "open",
    "flush": "flush",
    "cancel": "cancel",
    "close": "close",
    "claim": "claim",
}


# A worker's reply, every audio chunk included, in one match: the split and a check per level
# were ~10 us of the first audio's path after an idle spell (issue 20). The same ids as check_id.
_REPLY_TOPIC = re.compile(
    rf"{re.escape(ROOT)}/replies/({_ID_PATTERN})/({_ID_PATTERN})/({_ID_PATTERN})/({'|'.join(_REPLY_KINDS)})"
)


def parse(topic: str) -> Topic:
    """Every topic this project uses, parsed; anything else raises ``ProtocolError(bad_topic)``."""
    if (reply := _REPLY_TOPIC.fullmatch(topic)) is not None:
        return ReplyTopic(reply[1], reply[2], reply[3], _REPLY_KINDS[reply[4]])
    parts = topic.split("/")
    if topic == CANCEL:
        return CancelTopic()
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        raise ProtocolError(f"not a sesame topic: {topic!r}", code="bad_topic")
    area = parts[2]
    if area == "workers" and len(parts) == 5 and parts[4] in _WORKER_KINDS:
        return WorkerTopic(check_id(parts[3], "worker_id"), _WORKER_KINDS[parts[4]])
    if area == "replies" and len(parts) == 7 and parts[6] in _REPLY_KINDS:
        return ReplyTopic(
            check_id(parts[3], "gateway_id"),
            check_id(parts[4], "worker_id"),
            check_id(parts[5], "job_id"),
            _REPLY_KINDS[parts[6]],
        )
    if area == "sessions" and len(parts) == 5 and parts[4] in _SESSION_KINDS:
        return SessionTopic(check_id(parts[3], "session_id"), _SESSION_KINDS[parts[4]])
    raise ProtocolError(f"not a sesame topic: {topic!r}", code="bad_topic")
