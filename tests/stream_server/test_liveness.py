"""Liveness that tells busy from dead (issue 24): every message is a sign of life, and silence is
judged only up to what the gateway has read. Pure: time is a number we pass in."""

from __future__ import annotations

import pytest

from broker.messages import Heartbeat
from stream_server.core.actions import WORKERS, SendJob, Sentence, WorkerChanged
from stream_server.core.failover import FailoverConfig
from stream_server.core.scheduler import Scheduler
from stream_server.core.workers import WorkerRegistry


def hb(worker_id: str = "w1", interval_s: float = 0.5) -> Heartbeat:
    return Heartbeat(
        worker_id=worker_id, pid=1, state="ready", engine="piper", model="m", seq=1, sent_at=0.0,
        interval_s=interval_s,
    )  # fmt: skip


# Each row: events after a heartbeat at 0 (window 3 x 0.5 s), and whether w1 is dead at the end.
#   ("timer", now, read_through)  ("seen", now)  ("beat", now)  ("caught_up", now)
#   ("deaf", lost_at, now): the gateway's own link was down from lost_at until now
CASES = [
    ("silent and read through: dead", [("timer", 1.5, None)], True),
    ("silent, reader caught up at 1.5: dead", [("timer", 1.5, 1.5)], True),
    ("unread at the window's end: not yet", [("timer", 1.5, 1.0)], False),
    ("unread, then caught up with nothing from it: dead", [("timer", 1.5, 1.0), ("caught_up", 1.7)], True),
    ("unread, the unread heartbeat arrives: alive", [("timer", 1.5, 1.0), ("beat", 1.6)], False),
    (
        "unread, an audio frame arrives: alive",
        [("timer", 1.5, 1.0), ("seen", 1.6), ("caught_up", 1.7)],
        False,
    ),
    ("audio frames keep it alive", [("seen", 1.0), ("timer", 1.5, None)], False),
    ("frames stop: dead a window after the last", [("seen", 1.0), ("timer", 2.5, None)], True),
    ("caught up before the window ends: nothing to judge", [("caught_up", 1.0), ("timer", 1.4, None)], False),
    # The link lost at 1.0 (read_through stays there), back at 3.0: 0.5 s of its window were left.
    ("deaf: its own silence is not the worker's", [("timer", 2.0, 1.0), ("deaf", 1.0, 3.0)], False),
    ("deaf, then heard in its window", [("deaf", 1.0, 3.0), ("beat", 3.4), ("timer", 3.6, None)], False),
    ("deaf, then silent for the rest of its window: dead", [("deaf", 1.0, 3.0), ("timer", 3.5, None)], True),
    ("silent before the link was lost: dead all the same", [("timer", 1.5, 1.5), ("deaf", 1.6, 3.0)], True),
]


@pytest.mark.parametrize(("events", "dead"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_silence_is_judged_only_on_what_was_read(events: list[tuple], dead: bool) -> None:  # type: ignore[type-arg]
    r = WorkerRegistry(missed_heartbeats=3, retry_delay_s=1.0, retention_s=60.0)
    r.heartbeat(hb(), 0.0)
    for event in events:
        match event:
            case ("timer", now, read_through):
                r.handle_timer(now, read_through)
            case ("seen", now):
                r.seen("w1", now)
            case ("beat", now):
                r.heartbeat(hb(), now)
            case ("caught_up", now):
                r.caught_up(now)
            case ("deaf", lost_at, now):
                r.deaf(lost_at, now)
    assert r.workers["w1"].alive is not dead


def test_an_unconfirmed_worker_asks_for_no_timer() -> None:
    """Its window ran out while messages were unread: it waits for caught_up, the deadline task does
    not spin on a deadline in the past."""
    r = WorkerRegistry(missed_heartbeats=3)
    r.heartbeat(hb("w1"), 0.0)
    r.heartbeat(hb("w2"), 1.0)
    assert r.handle_timer(1.5, read_through=1.2) == []
    assert r.next_deadline() == pytest.approx(2.5)  # w2's window, not w1's past one
    [change] = r.caught_up(1.6)
    assert (change.worker_id, change.up, change.reason) == ("w1", False, "missed_heartbeats")


CFG = FailoverConfig(tiers=(WORKERS, "espeak-ng"), ack_timeout_s=1.0, timeout_s=10.0, stall_timeout_s=5.0)


def test_a_busy_workers_job_events_keep_it_alive_in_the_scheduler() -> None:
    """Ack and audio from the worker count as heartbeats: a worker too busy to beat on time (or
    whose beats are late) keeps its jobs."""
    s = Scheduler(CFG)
    s.heartbeat(hb(), 0.0)
    [job] = [a for a in s.submit(Sentence("s1", 0, 0, "Hello there.", "maya"), 0.0) if isinstance(a, SendJob)]
    s.ack(job.job_id, 1.0)
    for t in (1.4, 1.8, 2.2, 2.6):
        assert s.chunk(job.job_id, t) is not None
        assert not [a for a in s.handle_timer(t + 0.3) if isinstance(a, WorkerChanged)]
    # Once it is silent (no frames, no beats) for the window, it is dead.
    actions = s.handle_timer(2.6 + 1.5)
    assert [a.change.reason for a in actions if isinstance(a, WorkerChanged)] == ["missed_heartbeats"]
