"""``overloaded`` only when this worker cannot meet a job's playback need (synth_worker/job_deadline.py),
never because its queue is long while the needs are far. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from broker import topics
from broker.messages import Job, JobAck, JobError
from synth_worker.core import WorkerCore
from synth_worker.job_actions import Send
from synth_worker.job_deadline import LATE_S, Running, late_by_s, need_s, refusal, urgent

NOW = 1_000.0
SECOND = "x" * 14  # one second of expected speech (14 characters a second)


@pytest.mark.parametrize(
    ("why", "need_in", "running", "ahead", "rtf", "expected"),
    [
        ("idle, needed now: its own synthesis", 0.0, [], [], 0.1, 0.2),
        ("work ahead and running counted", 0.0, [Running(NOW - 0.1, SECOND * 3)], [SECOND * 2], 0.1, 0.6),
        ("a far need absorbs the queue", 10.0, [], [SECOND * 4] * 10, 0.1, 4.2 - 10.0),
        ("a running job past its estimate counts nothing", 0.0, [Running(NOW - 9.0, SECOND)], [], 0.1, 0.2),
        ("no pace measured yet: nothing to judge by", 0.0, [], [SECOND * 4] * 99, 0.0, float("-inf")),
    ],
)  # fmt: skip
def test_late_by(  # noqa: PLR0917
    why: str, need_in: float, running: list[Running], ahead: list[str], rtf: float, expected: float
) -> None:
    late = late_by_s(NOW + need_in, SECOND * 2, running, ahead, rtf, NOW)
    assert late == pytest.approx(expected), why


def test_a_batch_works_the_queue_ahead_off_several_at_a_time() -> None:
    one = late_by_s(NOW, SECOND, [], [SECOND * 4] * 4, 0.5, NOW, batch=1)
    four = late_by_s(NOW, SECOND, [], [SECOND * 4] * 4, 0.5, NOW, batch=4)
    assert one == pytest.approx(8.5)
    assert four == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("late", "refused"), [(LATE_S, False), (LATE_S + 0.01, True), (float("-inf"), False)]
)
def test_refusal(late: float, refused: bool) -> None:
    assert (refusal(late) is not None) == refused


def job(session: str, seq: int, seconds: int, need_in_s: float) -> bytes:
    return Job(
        job_id=f"{session}-{seq}",
        session_id=session,
        seq=seq,
        text=SECOND * seconds,
        voice="maya",
        reply_to=topics.reply_root("gw"),
        need_in_s=need_in_s,
    ).to_bytes()


def answers(actions: Sequence[object]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, Send) and isinstance(a.message, JobAck):
            out.append("ack")
        elif isinstance(a, Send) and isinstance(a.message, JobError):
            out.append(a.message.code)
    return out


def measured_worker(rtf: float) -> WorkerCore:
    """A ready Piper worker whose pace is measured at ``rtf``."""
    c = WorkerCore("w1", engine="piper", model="m", pid=1, interval_s=0.5, max_queue=256)
    c.ready(NOW)
    c.receive_job(job("warm", 0, 1, 0.0), NOW)
    c.job_done("warm-0", chunks=1, samples=24_000, sample_rate=24_000, synth_s=rtf, now=NOW)
    assert c.rtf == pytest.approx(rtf)
    return c


def test_a_long_queue_of_far_needs_takes_more_and_a_listener_needing_audio_now_passes_it() -> None:
    c = measured_worker(0.2)
    c.receive_job(job("a", 0, 3, 0.0), NOW)  # running: 0.6 s
    # 30 lookahead sentences of 4 s, each needed 4 s after the one before: 24 s of work, far needs.
    assert all(answers(c.receive_job(job("a", n, 4, 4.0 * n), NOW)) == ["ack"] for n in range(1, 31))
    late = [answers(c.receive_job(job(f"s{n}", 0, 4, 4.0 * n), NOW)) for n in range(1, 31)]
    assert late == [["ack"]] * 30  # the old rule (16 waiting) refused from the 16th on
    # A first sentence needed now starts after the running job: in time.
    assert answers(c.receive_job(job("b", 0, 2, 0.0), NOW)) == ["ack"]


def test_a_job_no_one_can_speak_in_time_here_is_refused_as_overloaded() -> None:
    c = measured_worker(0.5)
    c.receive_job(job("a", 0, 2, 0.0), NOW)  # running: 1 s
    # Listeners already waiting (needed now), 4 s each: 2 s of work apiece, taken while the first
    # audio is estimated at most LATE_S late, refused after.
    codes = [answers(c.receive_job(job(f"s{n}", 0, 4, 0.0), NOW))[0] for n in range(4)]
    assert codes == ["ack", "overloaded", "overloaded", "overloaded"]
    # A sentence needed in 20 s still fits behind them.
    assert answers(c.receive_job(job("far", 0, 4, 20.0), NOW)) == ["ack"]


def test_the_refusal_bound_is_the_setting() -> None:
    assert refusal(5.0) is not None and refusal(5.0, max_late_s=10.0) is None


@pytest.mark.parametrize(
    ("arrived", "need_in_s", "started", "expected"),
    [
        (10.0, 0.0, 10.0, True),  # a turn's first sentence, started at once
        (10.0, None, 10.2, True),  # need not said: now
        (10.0, 0.3, 10.0, True),  # needed within URGENT_S of its start
        (10.0, 4.0, 10.0, False),  # lookahead: needed 4 s from now
        (10.0, 4.0, 13.8, True),  # the same job, started late: now it is needed
        (10.0, 0.6, 10.0, False),
    ],
)
def test_a_job_is_urgent_when_its_listener_needs_it_now(
    arrived: float, need_in_s: float | None, started: float, expected: bool
) -> None:
    assert urgent(arrived, need_in_s, started) is expected


@pytest.mark.parametrize(
    ("arrived", "need_in_s", "started", "expected"),
    [
        (10.0, 4.0, 10.0, 4.0),  # lookahead started at once: all of its need is left
        (10.0, 4.0, 11.5, 2.5),  # started 1.5 s after it arrived
        (10.0, 4.0, 15.0, 0.0),  # started after its need: needed now, never a negative time
        (10.0, None, 10.2, 0.0),  # need not said: now
    ],
)
def test_the_need_left_at_the_start_is_what_the_engine_is_told(
    arrived: float, need_in_s: float | None, started: float, expected: float
) -> None:
    assert need_s(arrived, need_in_s, started) == pytest.approx(expected)
