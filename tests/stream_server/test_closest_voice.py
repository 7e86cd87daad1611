"""A sentence that must leave the primary goes to the closest voice that can still meet its need:
the Piper tier before espeak-ng; the turn keeps the voice it fell to until it ends. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from broker.messages import Heartbeat
from stream_server.core.actions import WORKERS, Cause, FailedOver, RunLocal, SendJob, Sentence
from stream_server.core.failover import FailoverConfig
from stream_server.core.scheduler import Scheduler
from stream_server.core.tier_queue import TierBusy, TierQueue

CFG = FailoverConfig(tiers=(WORKERS, "piper", "espeak-ng"), max_retries=3)


def of(actions: Sequence[object], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def sentence(session: str, seq: int, turn: int = 0, need_at: float = 0.0) -> Sentence:
    return Sentence(session, turn, seq, f"Sentence number {seq} of the turn.", "maya", need_at=need_at)


def piper_workers(*ids: str) -> Scheduler:
    s = Scheduler(CFG)
    for worker_id in ids:
        s.heartbeat(Heartbeat(worker_id, 1, "ready", "piper", "m", 1, 0.0, 0.5, rtf=0.1), 0.0)
    return s


def test_an_overloaded_worker_sends_the_sentence_to_the_piper_tier_and_the_turn_stays_there() -> None:
    s = piper_workers("w1")
    first = of(s.submit(sentence("a", 0), 1.0), SendJob)[0]
    second = of(s.submit(sentence("a", 1, need_at=5.0), 1.0), SendJob)[0]
    assert isinstance(first, SendJob) and isinstance(second, SendJob)
    actions = s.failed(first.job_id, "overloaded", 1.1, Cause.BUSY)
    [fell] = of(actions, FailedOver)
    assert isinstance(fell, FailedOver) and (fell.to_engine, fell.reason) == ("piper", "overloaded")
    # Its turn follows it to the Piper tier (one switch of voice, not a flip back and forth) ...
    assert [(a.sentence.seq, a.tier) for a in of(actions, RunLocal)] == [(0, "piper"), (1, "piper")]  # type: ignore[attr-defined]
    assert [(a.tier) for a in of(s.submit(sentence("a", 2), 1.2), RunLocal)] == ["piper"]  # type: ignore[attr-defined]
    # ... until it ends: the next turn is the worker's again.
    s.end_turn("a", 0)
    assert of(s.submit(sentence("a", 3, turn=1), 1.3), SendJob)
    # Busy is not broken: the worker is not cooled down, another session's sentence goes to it now.
    assert of(s.submit(sentence("b", 0), 1.1), SendJob)


def test_espeak_only_when_the_piper_tier_cannot_start_it_in_time() -> None:
    queue = TierQueue({"piper": 1}, queue_timeout_s=1.0)
    assert queue.offer("j1", "piper", sentence("a", 0), 10.0)  # runs
    assert queue.offer("j2", "piper", sentence("b", 0, need_at=13.0), 10.0) == []  # waits for a slot
    assert queue.handle_timer(12.0) == []  # its listener needs it at 13: Piper may still make it
    assert queue.finished("j1", 12.5)[0].job_id == "j2"  # it did: no espeak-ng
    assert queue.offer("j3", "piper", sentence("c", 0, need_at=11.0), 12.5) == []
    assert queue.handle_timer(13.5) == [TierBusy("j3", "piper")]  # not in time: to the next tier
    s = piper_workers()
    task_job = of(s.submit(sentence("c", 0), 13.5), RunLocal)[0]
    assert isinstance(task_job, RunLocal) and task_job.tier == "piper"
    [down] = of(s.failed(task_job.job_id, "tier_busy", 14.0, Cause.BUSY), RunLocal)
    assert isinstance(down, RunLocal) and down.tier == "espeak-ng"
    assert s.breakers["piper"].allow(14.0)  # busy, not broken
