"""Messages between gateway and workers over MQTT (JSON; audio travels separately, see audio.py).

Topics and direction (see docs/asyncapi.yaml):
    Job        gateway -> workers/{id}/jobs
    Cancel     gateway -> cancel (broadcast; every worker drops the named jobs)
    JobAck, JobDone, JobError    worker -> replies/{gateway}/{job}/events
    Heartbeat  worker -> workers/{id}/heartbeat (every 500 ms by default)
    WorkerStatus worker -> workers/{id}/status (retained; last will says offline)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .errors import ProtocolError
from .topics import check_id
from .wire import Message, Registry

PROTOCOL_VERSION = 1
MAX_JOB_TEXT = 4000

# The hops of one stamped job on the worker, in the order of ``JobDone.stamps``.
WORKER_HOPS = ("worker_received", "engine_started", "first_samples", "first_published")

WorkerState = Literal["loading", "warming", "ready", "draining", "unavailable", "offline"]

worker_messages = Registry("worker")


@worker_messages.register
@dataclass(frozen=True, slots=True)
class Job(Message):
    """One sentence to speak. ``reply_to`` is the topic prefix for this job's events and audio."""

    type = "job"
    job_id: str
    session_id: str
    seq: int
    text: str
    voice: str
    reply_to: str
    sample_rate: int = 24_000
    # Seconds since the epoch after which the result is useless (the gateway has failed over).
    expires_at: float | None = None
    # Seconds from when the job was sent until its listener needs its first audio (0: now; None:
    # not said, as 0). Workers serve the earliest need first (relative: no two hosts' clocks compared).
    need_in_s: float | None = None
    # Debug (SESAME_DEBUG_STAMPS on the gateway): the worker stamps this job's hops (``WORKER_HOPS``)
    # and returns them in its ``done``. Off by default, and then not on the wire at all.
    stamp: bool = False
    omitted_at_default = frozenset({"stamp"})

    def validate(self) -> None:
        check_id(self.job_id, "job_id")
        check_id(self.session_id, "session_id")
        if not self.text.strip():
            raise ProtocolError("job text is empty", code="empty_text")
        if len(self.text) > MAX_JOB_TEXT:
            raise ProtocolError(f"job text longer than {MAX_JOB_TEXT} characters", code="text_too_long")
        if not 8000 <= self.sample_rate <= 48_000:
            raise ProtocolError("sample_rate must be 8000..48000", code="bad_sample_rate")
        if not self.reply_to.startswith("sesame/") or any(c in self.reply_to for c in "+#"):
            raise ProtocolError("reply_to must be a sesame/ topic without wildcards", code="bad_topic")
        if self.seq < 0:
            raise ProtocolError("seq must be >= 0", code="bad_field")
        if self.need_in_s is not None and not 0 <= self.need_in_s <= 3600:
            raise ProtocolError("need_in_s must be 0..3600", code="bad_field")


@worker_messages.register
@dataclass(frozen=True, slots=True)
class Cancel(Message):
    """Drop these jobs (queued or running). An empty list with a session_id drops the session's jobs."""

    type = "cancel"
    job_ids: tuple[str, ...] = ()
    session_id: str | None = None

    def validate(self) -> None:
        for job_id in self.job_ids:
            check_id(job_id, "job_id")
        if self.session_id is not None:
            check_id(self.session_id, "session_id")
        if not self.job_ids and self.session_id is None:
            raise ProtocolError("cancel names no job and no session", code="bad_field")


# A job a worker starts at once is acknowledged by its first audio frame: its ``ack`` goes only if no
# audio is out this long after the job came (synth_worker/worker/jobs.py). A gateway's ack timeout
# must leave room for it (stream_server/config.py refuses one under twice this).
ACK_HOLD_S: Final = 0.05


@worker_messages.register
@dataclass(frozen=True, slots=True)
class JobAck(Message):
    type = "ack"
    job_id: str
    worker_id: str
    queue_position: int = 0


@worker_messages.register
@dataclass(frozen=True, slots=True)
class JobDone(Message):
    """Last event of a job: ``chunks`` audio frames totalling ``samples`` were sent."""

    type = "done"
    job_id: str
    worker_id: str
    chunks: int
    samples: int
    sample_rate: int
    engine: str
    synth_ms: float = 0.0
    # A stamped job's hops on the worker, ``time.monotonic()`` seconds in ``WORKER_HOPS`` order
    # (one clock per machine: comparable with the gateway's stamps when both run on one host).
    stamps: tuple[float, ...] = ()
    omitted_at_default = frozenset({"stamps"})

    def validate(self) -> None:
        if self.stamps and len(self.stamps) != len(WORKER_HOPS):
            raise ProtocolError(f"stamps must be {len(WORKER_HOPS)} numbers", code="bad_field")


@worker_messages.register
@dataclass(frozen=True, slots=True)
class JobError(Message):
    type = "job_error"
    job_id: str
    worker_id: str
    code: str
    message: str


@worker_messages.register
@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    type = "heartbeat"
    worker_id: str
    pid: int
    state: WorkerState
    engine: str
    model: str
    seq: int
    sent_at: float
    interval_s: float
    jobs_in_flight: int = 0
    queue_depth: int = 0
    # Seconds of compute per second of audio, measured on recent jobs (0 until measured).
    rtf: float = 0.0
    reason: str | None = None
    version: str = "0"
    # Optional worker figures (monitoring; a worker that does not measure them leaves them 0):
    # the last batch's size and per-stage wall milliseconds (Bark's four stages), and the seconds
    # the model took to load.
    batch_size: int = 0
    model_load_s: float = 0.0
    semantic_ms: float = 0.0
    coarse_ms: float = 0.0
    fine_ms: float = 0.0
    codec_ms: float = 0.0

    def validate(self) -> None:
        check_id(self.worker_id, "worker_id")
        if self.interval_s <= 0:
            raise ProtocolError("interval_s must be > 0", code="bad_field")
        figures = (self.rtf, self.batch_size, self.model_load_s, *self.stage_ms().values())
        if any(v < 0 for v in figures) or self.queue_depth < 0 or self.jobs_in_flight < 0:
            raise ProtocolError("heartbeat figures must not be negative", code="bad_field")

    def stage_ms(self) -> dict[str, float]:
        return {
            "semantic": self.semantic_ms,
            "coarse": self.coarse_ms,
            "fine": self.fine_ms,
            "codec": self.codec_ms,
        }


@worker_messages.register
@dataclass(frozen=True, slots=True)
class WorkerStatus(Message):
    """Retained. ``online`` while connected; the last will publishes ``offline``."""

    type = "status"
    worker_id: str
    state: Literal["online", "offline"]
    pid: int | None = None

    def validate(self) -> None:
        check_id(self.worker_id, "worker_id")


def decode_worker_message(raw: bytes | str) -> Message:
    return worker_messages.decode(raw)
