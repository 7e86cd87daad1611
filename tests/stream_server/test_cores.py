"""The small pure cores the hub was split into: job tracking, preloading, health sampling, worker
retention, and the scheduler's deadlines (fake clock, table-driven, no asyncio)."""

from __future__ import annotations

import pytest

from broker.messages import Heartbeat, WorkerStatus
from stream_server.core.actions import GiveUp, SendJob, Sentence
from stream_server.core.cache import SentenceCache, cache_key
from stream_server.core.failover import FailoverConfig
from stream_server.core.health import HealthSampler, SampleHealth
from stream_server.core.jobs import JobTracker, Sender
from stream_server.core.preload import Preload, Preloader
from stream_server.core.scheduler import Scheduler
from stream_server.core.workers import WorkerRegistry


def hb(worker_id: str = "w1", interval_s: float = 0.5) -> Heartbeat:
    return Heartbeat(worker_id, 1, "ready", "bark", "m", 1, 0.0, interval_s)


# ---- JobTracker ---------------------------------------------------------------------------------


def test_done_waits_for_its_chunks_and_late_chunks_are_ignored() -> None:
    t = JobTracker()
    t.sent("j1", "w1")
    assert not t.chunk("j1")
    assert not t.done("j1", 3)  # two still on the way
    assert not t.chunk("j1")
    assert t.chunk("j1")  # the third completes the waiting done
    t.keep("j1", b"ab")
    t.keep("j1", b"cd")
    assert t.finish("j1") == b"abcd"
    assert not t.chunk("j1") and not t.done("j1", 1) and len(t) == 0


def test_a_reply_counts_only_from_the_worker_the_job_was_sent_to() -> None:
    t = JobTracker()
    t.sent("j1", "w1")
    assert t.sender("j1", "w1") is Sender.ASSIGNED
    assert t.sender("j1", "w2") is Sender.WRONG_FIRST  # logged once per worker...
    assert t.sender("j1", "w2") is Sender.WRONG  # ...counted every time
    assert t.sender("j2", "w1") is Sender.UNKNOWN  # not in flight (late, or a local tier's job)
    assert t.sender("j1", "w3") is Sender.WRONG_FIRST


def test_jobs_never_sent_are_not_tracked() -> None:
    t = JobTracker()
    assert not t.chunk("stray") and not t.done("stray", 0)
    t.keep("stray", b"x")
    assert len(t) == 0 and t.finish("stray") == b""


def test_done_after_every_chunk_completes_at_once() -> None:
    t = JobTracker()
    t.sent("j1", "w1")
    t.chunk("j1")
    assert t.done("j1", 1)
    t.forget("j1")
    assert len(t) == 0


# ---- Preloader --------------------------------------------------------------------------------


def test_preloading_starts_once_and_only_while_idle() -> None:
    cache = SentenceCache(10_000, 60.0)
    p = Preloader(("Hello.", "Bye."), "maya", cache)
    assert p.step(busy=False, now=0.0) == []  # no worker yet
    p.worker_up()
    p.worker_up()  # only the first time counts
    assert p.step(busy=True, now=0.0) == []
    [first] = p.step(busy=False, now=0.0)
    assert first == Preload(Sentence("preload", 0, 0, "Hello.", "maya", background=True))
    cache.put(cache_key("maya", 24_000, "Bye."), b"xx", "bark", 0.0)
    assert p.step(busy=False, now=1.0) == []  # already cached: skipped
    assert p.pending == 0


def test_without_a_cache_nothing_is_preloaded() -> None:
    p = Preloader(("Hello.",), "maya", None)
    p.worker_up()
    assert p.step(busy=False, now=0.0) == [] and p.pending == 0


# ---- HealthSampler ------------------------------------------------------------------------------


def test_health_samples_on_its_interval() -> None:
    h = HealthSampler(10.0, start=5.0)
    assert h.next_deadline() == 5.0
    assert h.handle_timer(4.9) == []
    assert h.handle_timer(5.0) == [SampleHealth()]
    assert h.next_deadline() == 15.0 and h.handle_timer(14.0) == []


# ---- WorkerRegistry retention ---------------------------------------------------------------------


def test_dead_workers_are_forgotten_after_the_retention_window() -> None:
    r = WorkerRegistry(missed_heartbeats=3, retry_delay_s=1.0, retention_s=60.0)
    r.heartbeat(hb("w1"), 0.0)
    r.heartbeat(hb("w2"), 0.0)
    assert r.next_deadline() == 1.5
    assert [c.worker_id for c in r.handle_timer(1.5)] == ["w1", "w2"]
    r.heartbeat(hb("w2"), 2.0)  # w2 came back
    assert r.next_deadline() == pytest.approx(3.5)
    r.heartbeat(hb("w2"), 59.0)
    r.handle_timer(59.9)
    assert "w1" in r.workers
    r.handle_timer(60.0)
    assert "w1" not in r.workers and "w2" in r.workers


def test_a_worker_gone_by_last_will_is_forgotten_too() -> None:
    r = WorkerRegistry(retention_s=30.0)
    r.heartbeat(hb("w1"), 0.0)
    r.status(WorkerStatus("w1", "offline"), 1.0)
    assert r.next_deadline() == 30.0
    r.handle_timer(30.0)
    assert r.workers == {}
    assert r.next_deadline() is None


# ---- Scheduler deadlines -----------------------------------------------------------------------

CFG = FailoverConfig(tiers=("workers",), ack_timeout_s=1.0, timeout_s=4.0, stall_timeout_s=2.0, max_retries=0)


def placed(now: float = 0.0) -> tuple[Scheduler, SendJob]:
    s = Scheduler(CFG)
    s.heartbeat(hb(interval_s=100.0), now)
    [job] = [a for a in s.submit(Sentence("s1", 0, 0, "Hello there.", "maya"), now) if isinstance(a, SendJob)]
    return s, job


def test_an_idle_scheduler_has_no_deadline() -> None:
    assert Scheduler(CFG).next_deadline() is None


@pytest.mark.parametrize(
    ("events", "deadline"),
    [
        ([], 1.0),  # sent at 0: the ack is due at 1
        (["ack@0.2"], 5.0),  # acked: first audio by sent + ack timeout + SESAME_TIMEOUT
        (["ack@0.2", "chunk@0.5"], 2.5),  # audio flowing: the stall deadline
        (["chunk@0.3", "chunk@0.9"], 2.9),
    ],
)
def test_the_next_deadline_follows_the_attempt(events: list[str], deadline: float) -> None:
    s, job = placed()
    for ev in events:
        kind, at = ev.split("@")
        if kind == "ack":
            s.ack(job.job_id, float(at))
        else:
            s.chunk(job.job_id, float(at))
    assert s.next_deadline() == pytest.approx(deadline)
    assert s.handle_timer(deadline - 1e-6) == []  # not a moment early
    assert any(isinstance(a, GiveUp) for a in s.handle_timer(deadline))
