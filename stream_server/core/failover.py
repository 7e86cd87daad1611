"""Failover settings, the state of one sentence's attempts, and when a first audio is late (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stream_server.core.actions import WORKERS, Sentence

# The in-process tiers, in their default order after the worker pool (SESAME_TIERS).
LOCAL_TIERS = ("elevenlabs", "edge-tts", "piper", "espeak-ng")


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """The failover settings; their defaults are written here only (``GatewayConfig.from_env``
    reads them from ``DEFAULTS``)."""

    tiers: tuple[str, ...] = (WORKERS, *LOCAL_TIERS)
    ack_timeout_s: float = 1.0
    timeout_s: float = 10.0  # SESAME_TIMEOUT: the most any attempt waits for its first audio
    first_audio_base_s: float = 1.0
    first_audio_slack: float = 3.0
    stall_timeout_s: float = 2.0
    max_retries: int = 3  # SESAME_MAX_RETRIES: further worker attempts after the first
    retry_delay_s: float = 1.0  # SESAME_RETRY_DELAY: cool-down of a worker that failed a job
    missed_heartbeats: int = 3
    chars_per_second: float = 14.0  # speech rate used to estimate a sentence's audio length
    probe_interval_s: float = 5.0
    worker_retention_s: float = 300.0  # SESAME_WORKER_RETENTION: a dead worker is forgotten then


DEFAULTS = FailoverConfig()


@dataclass(slots=True)
class Attempt:
    job_id: str
    tier: str
    engine: str
    worker_id: str | None
    sent_at: float
    deadline: float  # first audio must arrive by then
    acked_at: float | None = None
    first_audio_at: float | None = None
    last_chunk_at: float | None = None
    # its deadline passed while the gateway's MQTT reader was behind (its reply may be unread):
    # judged again by the scheduler's ``caught_up``, as a worker's silence is
    unconfirmed: bool = False


def attempt_due(config: FailoverConfig, att: Attempt) -> float | None:
    """When this attempt is late: its ack, its first audio, or the next chunk after the last."""
    if att.acked_at is None:  # a worker's ack; a local tier's start is never late (its queue bounds it)
        return att.sent_at + config.ack_timeout_s if att.worker_id is not None else None
    if att.first_audio_at is None:
        return att.deadline
    if att.last_chunk_at is not None:
        return att.last_chunk_at + config.stall_timeout_s
    return None


def lateness(config: FailoverConfig, att: Attempt, now: float, judged: float) -> str | None:
    """What is late about ``att`` at ``now``: None, "ack_timeout", "first_audio_timeout", "stall",
    or "unconfirmed" (a worker's reply may be among what is unread: the reader is at ``judged``)."""
    if (due := attempt_due(config, att)) is None or now < due:
        return None
    if att.worker_id is not None and judged < due:
        return "unconfirmed"
    if att.worker_id is not None and att.acked_at is None:
        return "ack_timeout"
    return "first_audio_timeout" if att.first_audio_at is None else "stall"


@dataclass(slots=True)
class Task:
    sentence: Sentence
    tier_index: int
    attempt: Attempt | None = None
    worker_tries: int = 0
    failed_workers: set[str] = field(default_factory=set)


def first_audio_deadline(
    config: FailoverConfig, sentence: Sentence, rtf: float, queue_position: int, now: float
) -> float:
    """When the first audio of a worker job is late, counted from ``now`` (its ack, or the worker
    finishing a job ahead of it): late by the worker's pace (``base + slack x rtf x expected audio x
    (jobs ahead + 1)``) *and* by its listener's need, less a fallback's ``base`` lead (a sentence
    needed in 8 s does not fail over at 2 s); at most ``timeout_s`` away."""
    audio_s = len(sentence.text) / config.chars_per_second
    pace = config.first_audio_base_s + config.first_audio_slack * rtf * audio_s * (queue_position + 1)
    return min(now + config.timeout_s, max(now + pace, sentence.need_at - config.first_audio_base_s))


def budget_again(config: FailoverConfig, held: Iterable[Task], rtf: float, now: float) -> None:
    """A worker finished a job: the jobs it holds that were acked and have not begun get their own
    budget again from now (a slow worker making progress is not failed over for its queue)."""
    if rtf <= 0:
        return
    for task in held:
        att = task.attempt
        if att is not None and att.acked_at is not None and att.first_audio_at is None:
            late = first_audio_deadline(config, task.sentence, rtf, 0, now)
            att.deadline = max(att.deadline, min(late, att.acked_at + config.timeout_s))


def ahead_not_begun(tasks: Iterable[Task], task: Task, now: float) -> float | None:
    """The latest deadline, still to come, of an earlier sentence of ``task``'s turn that has no
    audio yet: ``task`` is heard after it, so its listener cannot need it before."""
    s = task.sentence
    return max(
        (
            t.attempt.deadline
            for t in tasks
            if t.sentence.session_id == s.session_id
            and t.sentence.turn == s.turn
            and t.sentence.seq < s.seq
            and t.attempt is not None
            and t.attempt.first_audio_at is None
            and t.attempt.deadline > now
        ),
        default=None,
    )


def followers(tasks: Iterable[Task], task: Task, level: int) -> list[tuple[Task, Attempt]]:
    """The later sentences of ``task``'s turn still above tier ``level`` with no audio yet: they
    follow it down (one audible switch of voice per turn, not a flip-flop)."""
    s = task.sentence
    return [
        (t, t.attempt)
        for t in tasks
        if t is not task
        and t.sentence.session_id == s.session_id
        and t.sentence.turn == s.turn
        and t.sentence.seq > s.seq
        and t.tier_index < level
        and t.attempt is not None
        and t.attempt.first_audio_at is None
    ]
