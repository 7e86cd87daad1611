"""Concurrency caps of the in-process tiers (stream_server/core/tier_queue.py). Pure."""

from __future__ import annotations

from stream_server.core.actions import Sentence
from stream_server.core.tier_queue import TierBusy, TierQueue


def s(session: str, seq: int = 0, need_at: float = 0.0) -> Sentence:
    return Sentence(session, 0, seq, "Hello there.", "maya", need_at=need_at)


def started(starts: list) -> list[str]:  # type: ignore[type-arg]
    return [st.job_id for st in starts]


def test_a_capped_tier_runs_at_most_its_cap_and_the_rest_wait() -> None:
    q = TierQueue({"piper": 2}, queue_timeout_s=1.0)
    assert started(q.offer("j1", "piper", s("a"), 0.0)) == ["j1"]
    assert started(q.offer("j2", "piper", s("b"), 0.0)) == ["j2"]
    assert started(q.offer("j3", "piper", s("c"), 0.0)) == []
    assert (q.running("piper"), q.waiting("piper")) == (2, 1)
    assert started(q.finished("j1", 0.5)) == ["j3"]
    assert q.next_deadline() is None


def test_an_uncapped_tier_starts_everything() -> None:
    q = TierQueue({"piper": 1}, queue_timeout_s=1.0)
    assert [started(q.offer(f"j{i}", "edge-tts", s("a", i), 0.0)) for i in range(3)] == [
        ["j0"],
        ["j1"],
        ["j2"],
    ]


def test_waiting_jobs_start_by_need_then_round_robin() -> None:
    q = TierQueue({"piper": 1}, queue_timeout_s=10.0)
    q.offer("run", "piper", s("a"), 0.0)
    q.offer("a-later", "piper", s("a", 1, need_at=5.0), 0.0)
    q.offer("b-now", "piper", s("b"), 0.0)
    q.offer("c-soon", "piper", s("c", need_at=3.0), 0.0)
    order, running = [], "run"
    for t in (1.0, 1.1, 1.2):
        [st] = q.finished(running, t)
        order.append(st.job_id)
        running = st.job_id
    assert order == ["b-now", "c-soon", "a-later"]


def test_a_job_that_cannot_start_in_time_is_handed_back_busy() -> None:
    q = TierQueue({"espeak-ng": 1}, queue_timeout_s=1.0)
    q.offer("j1", "espeak-ng", s("a"), 0.0)
    q.offer("j2", "espeak-ng", s("b"), 0.2)
    assert q.next_deadline() == 1.2
    assert q.handle_timer(1.1) == []
    assert q.handle_timer(1.2) == [TierBusy("j2", "espeak-ng")]
    assert q.waiting("espeak-ng") == 0 and q.finished("j1", 1.3) == []


def test_a_sentence_behind_its_own_sessions_running_one_is_not_handed_back() -> None:
    """Its listener hears them in order: while the one before it runs, its need has not come."""
    q = TierQueue({"piper": 1}, queue_timeout_s=1.0)
    q.offer("a0", "piper", s("a"), 0.0)
    q.offer("a1", "piper", s("a", 1, need_at=0.5), 0.0)
    q.offer("b0", "piper", s("b"), 0.0)
    assert q.next_deadline() == 1.0  # b0's; a1 waits on a0
    assert q.handle_timer(5.0) == [TierBusy("b0", "piper")]
    assert [st.job_id for st in q.finished("a0", 5.1)] == ["a1"]


def test_a_job_needed_later_waits_until_its_need() -> None:
    q = TierQueue({"piper": 1}, queue_timeout_s=1.0)
    q.offer("j1", "piper", s("a"), 0.0)
    q.offer("j2", "piper", s("b", need_at=3.0), 0.0)  # another listener, still hearing audio
    assert q.next_deadline() == 3.0
    assert [st.job_id for st in q.finished("j1", 1.5)] == ["j2"]


def test_a_cancelled_waiting_job_leaves_the_queue() -> None:
    q = TierQueue({"piper": 1}, queue_timeout_s=1.0)
    q.offer("j1", "piper", s("a"), 0.0)
    q.offer("j2", "piper", s("b"), 0.0)
    assert q.finished("j2", 0.1) == []  # cancelled while waiting
    assert q.finished("j1", 0.2) == [] and q.running("piper") == 0


def test_the_last_resort_tier_keeps_a_sentence_waiting_rather_than_hand_it_to_text() -> None:
    """After the last audio tier comes only text: a late voice beats a sentence sent as text."""
    q = TierQueue({"piper": 1, "espeak-ng": 1}, queue_timeout_s=1.0, last_resort="espeak-ng")
    assert started(q.offer("j1", "espeak-ng", s("a"), 0.0)) == ["j1"]
    assert q.offer("j2", "espeak-ng", s("b"), 0.2) == []
    assert q.next_deadline() is None and q.handle_timer(60.0) == []
    assert started(q.finished("j1", 60.5)) == ["j2"]
    # a tier before it still hands a sentence on when it cannot start it in time
    q.offer("p1", "piper", s("c"), 0.0)
    q.offer("p2", "piper", s("d"), 0.0)
    assert q.handle_timer(1.0) == [TierBusy("p2", "piper")]
