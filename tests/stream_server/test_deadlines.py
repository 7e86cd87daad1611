"""Scheduling by playback deadline (issue 24 item 2): when a listener needs a sentence, and what
that changes. Pure: time is a number we pass in."""

from __future__ import annotations

import pytest

from broker.messages import Heartbeat
from broker.ws_protocol import Speak
from stream_server.core.actions import WORKERS, FailedOver, SendJob, Sentence
from stream_server.core.failover import FailoverConfig
from stream_server.core.playback import PlaybackClock, expected_audio_s
from stream_server.core.scheduler import Scheduler
from stream_server.core.session import SessionCore
from stream_server.core.session_outs import Dispatch, EmitAudio

# (frames sent as (at, seconds), ahead_s, now) -> need_at
CASES = [
    ("nothing sent: now", [], 0.0, 5.0, 5.0),
    ("nothing sent, audio ahead: now + ahead", [], 2.0, 5.0, 7.0),
    ("playing: when it runs out", [(0.0, 3.0)], 0.0, 1.0, 3.0),
    ("frames back to back add up", [(0.0, 1.0), (0.5, 1.0), (0.6, 1.0)], 0.0, 0.7, 3.0),
    ("a gap restarts the clock", [(0.0, 1.0), (4.0, 1.0)], 0.0, 4.2, 5.0),
    ("played out long ago: now", [(0.0, 1.0)], 0.0, 9.0, 9.0),
    ("playing and audio ahead", [(0.0, 3.0)], 4.0, 1.0, 7.0),
]


@pytest.mark.parametrize(("sent", "ahead", "now", "need"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_need_at(sent: list[tuple[float, float]], ahead: float, now: float, need: float) -> None:
    clock = PlaybackClock()
    for at, seconds in sent:
        clock.sent(seconds, at)
    assert clock.need_at(ahead, now) == pytest.approx(need)


def test_audio_ahead_of_a_sentence_is_what_its_predecessors_have_not_sent() -> None:
    core = SessionCore("s1", voice="maya", sample_rate=1000)
    texts = ["One two three four five six.", "Seven eight nine ten.", "Eleven twelve."]
    outs = core.receive(Speak(" ".join(texts)), 0.0)
    assert [o.sentence.seq for o in outs if isinstance(o, Dispatch)] == [0]  # first audio first
    seqs = list(core.queue)
    assert len(seqs) == 3
    first, second = (core.sentences[s].sentence.text for s in seqs[:2])
    assert core.audio_ahead_s(seqs[0]) == 0.0
    assert core.audio_ahead_s(seqs[2]) == pytest.approx(expected_audio_s(first) + expected_audio_s(second))
    # 0.5 s of the first sentence sent: 0.5 s less ahead of the others; the frame says its length.
    [frame] = [o for o in core.audio(seqs[0], "piper", b"\0\0" * 500) if isinstance(o, EmitAudio)]
    assert frame.seconds == pytest.approx(0.5)
    assert core.audio_ahead_s(seqs[1]) == pytest.approx(expected_audio_s(first) - 0.5)


CFG = FailoverConfig(tiers=(WORKERS, "espeak-ng"), ack_timeout_s=1.0, timeout_s=10.0, stall_timeout_s=2.0)


def hb(rtf: float) -> Heartbeat:
    return Heartbeat(
        worker_id="w1", pid=1, state="ready", engine="piper", model="m", seq=1, sent_at=0.0,
        interval_s=100.0, rtf=rtf,
    )  # fmt: skip


# need_at of the sentence -> when its first audio is late (ack at 0.1; the worker's pace alone:
# 1 s + 3 x rtf 0.1 x ~0.86 s of audio = ~1.36 s after the ack; a fallback's lead: 1 s)
@pytest.mark.parametrize(
    ("need_at", "late_at"),
    [(0.0, 1.36), (1.0, 1.36), (6.0, 5.0), (30.0, 10.1)],
    ids=[
        "needed now",
        "needed soon: the worker's pace",
        "needed in 6 s: 1 s before",
        "bounded by SESAME_TIMEOUT",
    ],
)
def test_a_sentence_fails_over_when_its_listener_would_run_dry(need_at: float, late_at: float) -> None:
    s = Scheduler(CFG)
    s.heartbeat(hb(0.1), 0.0)
    sentence = Sentence("s1", 0, 0, "Hello there.", "maya", need_at=need_at)
    [job] = [a for a in s.submit(sentence, 0.0) if isinstance(a, SendJob)]
    s.ack(job.job_id, 0.1)
    deadline = s.next_deadline()
    assert deadline == pytest.approx(late_at, abs=0.01)
    assert not s.handle_timer(deadline - 0.01)
    [fb] = [a for a in s.handle_timer(deadline) if isinstance(a, FailedOver)]
    assert fb.reason == "first_audio_timeout"


def test_a_worker_that_finishes_a_job_gives_the_ones_behind_it_their_budget_again() -> None:
    """Progress, not a clock from dispatch: a slow worker working through its queue keeps it."""
    s = Scheduler(CFG)
    s.heartbeat(hb(0.1), 0.0)
    first, second = (
        next(a for a in s.submit(Sentence("s1", 0, i, "Hello there.", "maya"), 0.0) if isinstance(a, SendJob))
        for i in (0, 1)
    )
    s.ack(first.job_id, 0.1, queue_position=0)
    s.ack(second.job_id, 0.1, queue_position=1)  # late by the pace alone at ~1.61
    s.chunk(first.job_id, 1.2)
    s.done(first.job_id, 1.4)
    assert not [a for a in s.handle_timer(2.0) if isinstance(a, FailedOver)]
    assert s.next_deadline() == pytest.approx(1.4 + 1.257, abs=0.01)


def test_a_sentence_is_not_late_before_the_one_ahead_of_it_has_begun() -> None:
    """Its listener hears it after the earlier one: while that one has no audio (and is not late
    itself), the later one waits with it instead of failing over on its own."""
    s = Scheduler(CFG)
    s.heartbeat(hb(0.1), 0.0)
    jobs = [
        next(a for a in s.submit(Sentence("s1", 0, i, text, "maya"), 0.0) if isinstance(a, SendJob))
        for i, text in enumerate(("Hello there.", "Short."))
    ]
    for job in jobs:
        s.ack(job.job_id, 0.1, queue_position=0)  # late by their pace at ~1.36 and ~1.23
    assert not [a for a in s.handle_timer(1.25) if isinstance(a, FailedOver)]
    assert s.next_deadline() == pytest.approx(1.357, abs=0.01)  # the first one's own
    [fb] = [a for a in s.handle_timer(1.36) if isinstance(a, FailedOver)]
    assert fb.sentence.seq == 0  # (and the turn follows it down: one switch)
