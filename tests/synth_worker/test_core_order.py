"""WorkerCore's start order: a short first clause is never queued behind longer jobs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from broker import topics
from broker.messages import Job, JobAck, JobError
from broker.wire import Message
from synth_worker.core import WorkerCore
from synth_worker.job_actions import Send, StartJob
from synth_worker.job_intake import start_order

NOW = 1_000.0
M = TypeVar("M", bound=Message)
REPLY = topics.reply_root("gw")


def job(session: str, seq: int, text: str) -> Job:
    return Job(
        job_id=f"{session}-{seq}", session_id=session, seq=seq, text=text, voice="maya", reply_to=REPLY
    )


def started(actions: Sequence[object]) -> list[str]:
    return [j.job_id for a in actions if isinstance(a, StartJob) for j in a.jobs]


def test_a_turns_short_first_clause_starts_before_queued_long_sentences() -> None:
    c = WorkerCore("w1", engine="bark", model="m", pid=1, interval_s=0.5, max_queue=8)
    c.ready(NOW)
    long = "A long sentence that takes a while to synthesize, with a clause or two. "
    assert started(c.receive_job(job("a", 0, long).to_bytes(), NOW)) == ["a-0"]
    for seq in (1, 2):
        c.receive_job(job("a", seq, long).to_bytes(), NOW)
    c.receive_job(job("b", 0, "Sure,").to_bytes(), NOW)  # another session's turn begins
    done = c.job_done("a-0", chunks=1, samples=240, sample_rate=24_000, synth_s=0.1, now=NOW)
    assert started(done) == ["b-0"]
    done = c.job_done("b-0", chunks=1, samples=240, sample_rate=24_000, synth_s=0.1, now=NOW)
    assert started(done) == ["a-1"]


def test_a_listener_waiting_now_passes_other_sessions_lookahead() -> None:
    """Earliest playback need first: session a's lookahead (needed in 4 and 8 s) waits while b's
    first sentence (needed now) and c's next one (needed in 1 s) start; the ack says the place."""
    c = WorkerCore("w1", engine="piper", model="m", pid=1, interval_s=0.5, max_queue=8)
    c.ready(NOW)
    long = "A long sentence that takes a while to synthesize, with a clause or two. "
    assert started(c.receive_job(job("a", 0, long).to_bytes(), NOW)) == ["a-0"]
    c.receive_job(replace(job("a", 1, "Short."), need_in_s=4.0).to_bytes(), NOW)
    c.receive_job(replace(job("a", 2, "Short."), need_in_s=8.0).to_bytes(), NOW)
    c.receive_job(replace(job("c", 5, long), need_in_s=1.0).to_bytes(), NOW)
    acks = [a for a in c.receive_job(job("b", 0, long).to_bytes(), NOW + 0.1) if not isinstance(a, StartJob)]
    assert acks[0].message.queue_position == 1  # type: ignore[attr-defined]  # only a-0 before it
    order = []
    running = "a-0"
    for _ in range(4):
        [nxt] = started(
            c.job_done(running, chunks=1, samples=240, sample_rate=24_000, synth_s=0.1, now=NOW + 0.2)
        )
        order.append(nxt)
        running = nxt
    assert order == ["b-0", "c-5", "a-1", "a-2"]


def test_listeners_already_waiting_are_served_round_robin() -> None:
    """Every need past: the session that started a job longest ago goes first, so one session's
    many sentences cannot hold the worker ahead of another's."""
    queue = deque([job("a", 1, "Same."), job("a", 2, "Same."), job("b", 0, "Same.")])
    assert [j.job_id for j in start_order(queue, NOW, served={"a": 2, "b": 1})] == ["b-0", "a-1", "a-2"]


def test_a_sessions_own_jobs_keep_their_order_even_when_later_ones_are_shorter() -> None:
    queue = deque([job("a", 1, "A longer one first."), job("a", 2, "Short."), job("b", 0, "Mid length.")])
    assert [j.job_id for j in start_order(queue)] == ["b-0", "a-1", "a-2"]


def test_ties_go_to_the_earliest_queued() -> None:
    queue = deque([job("a", 0, "Same."), job("b", 0, "Same."), job("c", 0, "Same.")])
    assert [j.job_id for j in start_order(queue)] == ["a-0", "b-0", "c-0"]


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.text(alphabet="xy ", min_size=1, max_size=30)), max_size=12)
)
def test_start_order_is_a_permutation_keeping_each_sessions_order(items: list[tuple[str, str]]) -> None:
    queue = deque(job(s, i, "w" + t) for i, (s, t) in enumerate(items))
    order = start_order(queue)
    assert sorted(j.job_id for j in order) == sorted(j.job_id for j in queue)
    for session in "abc":
        assert [j.seq for j in order if j.session_id == session] == [
            j.seq for j in queue if j.session_id == session
        ]
    # the first to start is the shortest of the sessions' earliest jobs
    if order:
        heads: dict[str, Job] = {}
        for j in queue:
            heads.setdefault(j.session_id, j)
        assert len(order[0].text) == min(len(j.text) for j in heads.values())


def replies(actions: Sequence[object], kind: type[M]) -> list[M]:
    return [m for a in actions if isinstance(a, Send) and isinstance(m := a.message, kind)]


def test_a_first_sentence_displaces_queued_lookahead_from_a_full_queue() -> None:
    """The queue is full of session a's lookahead (needed later): b's first sentence (needed now)
    is queued and acked; the job that would start last, a's latest, is refused ``overloaded`` so the
    gateway places it elsewhere. A newcomer that would itself start last is the one refused."""
    c = WorkerCore("w1", engine="espeak-ng", model="m", pid=1, interval_s=0.5, max_queue=2)
    c.ready(NOW)
    c.receive_job(job("a", 0, "Running now.").to_bytes(), NOW)
    c.receive_job(replace(job("a", 1, "Later."), need_in_s=2.0).to_bytes(), NOW)
    c.receive_job(replace(job("a", 2, "Later still."), need_in_s=4.0).to_bytes(), NOW)
    out = c.receive_job(job("b", 0, "Hello there.").to_bytes(), NOW)
    assert [(e.job_id, e.code) for e in replies(out, JobError)] == [("a-2", "overloaded")]
    assert [m.job_id for m in replies(out, JobAck)] == ["b-0"]
    assert sorted(j.job_id for j in c.queue) == ["a-1", "b-0"]
    late = c.receive_job(replace(job("c", 0, "Much later."), need_in_s=9.0).to_bytes(), NOW)
    assert [(e.job_id, e.code) for e in replies(late, JobError)] == [("c-0", "overloaded")]
    assert not replies(late, JobAck)
    assert sorted(j.job_id for j in c.queue) == ["a-1", "b-0"] and c.counters.rejected == 2
