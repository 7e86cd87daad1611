"""WorkerCore: the job rules without I/O. Synchronous; time is passed in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import topics
from broker.errors import EngineCancelled, EngineError, EngineTimeout, EngineUnavailable
from broker.messages import Cancel, Heartbeat, Job, JobAck, JobDone, JobError, decode_worker_message
from synth_worker.core import WorkerCore
from synth_worker.job_actions import Send, StartJob, Stop

NOW = 1_000.0
REPLY = topics.reply_root("gw")


def core(**kw: object) -> WorkerCore:
    c = WorkerCore("w1", engine="bark", model="m", pid=42, interval_s=0.5, **kw)  # type: ignore[arg-type]
    c.ready(NOW)
    return c


def job(n: int, text: str = "Hello.", voice: str = "maya", session: str = "s1", **kw: object) -> Job:
    return Job(job_id=f"j{n}", session_id=session, seq=n, text=text, voice=voice, reply_to=REPLY, **kw)  # type: ignore[arg-type]


def sent(actions: list, cls: type) -> list:  # type: ignore[type-arg]
    return [a.message for a in actions if isinstance(a, Send) and isinstance(a.message, cls)]


def started(actions: list) -> list[str]:  # type: ignore[type-arg]
    return [j.job_id for a in actions if isinstance(a, StartJob) for j in a.jobs]


def test_accepted_job_is_acked_then_started() -> None:
    c = core()
    actions = c.receive_job(job(1).to_bytes(), NOW)
    assert isinstance(actions[0], Send) and isinstance(actions[0].message, JobAck)
    assert actions[0].topic == topics.job_events(REPLY, "j1")
    assert actions[0].message.queue_position == 0
    assert started(actions) == ["j1"]
    assert c.heartbeat(NOW).jobs_in_flight == 1


def test_queue_positions_and_next_job_starts_when_one_ends() -> None:
    c = core(max_queue=4)
    c.receive_job(job(1).to_bytes(), NOW)
    a2 = c.receive_job(job(2).to_bytes(), NOW)
    a3 = c.receive_job(job(3).to_bytes(), NOW)
    assert [m.queue_position for m in sent(a2 + a3, JobAck)] == [1, 2]
    assert started(a2 + a3) == []
    assert c.heartbeat(NOW).queue_depth == 2
    done = c.job_done("j1", chunks=3, samples=2400, sample_rate=24_000, synth_s=0.05, now=NOW)
    (msg,) = sent(done, JobDone)
    assert (msg.chunks, msg.samples, msg.sample_rate, msg.engine, msg.synth_ms) == (
        3,
        2400,
        24_000,
        "bark",
        50.0,
    )
    assert started(done) == ["j2"]
    failed = c.job_failed("j2", EngineError("boom"), NOW)
    assert [m.code for m in sent(failed, JobError)] == ["engine_error"]
    assert started(failed) == ["j3"]


@pytest.mark.parametrize(
    ("state_setup", "payload_job", "code"),
    [
        ("unavailable", job(1), "worker_unavailable"),
        ("draining", job(1), "draining"),
        ("ready", job(1, expires_at=NOW - 0.001), "expired"),
        ("ready", job(1, text="x" * 201), "text_too_long"),
    ],
)
def test_refusals(state_setup: str, payload_job: Job, code: str) -> None:
    c = core(max_length=200)
    if state_setup == "unavailable":
        c.unavailable("no model")
    elif state_setup == "draining":
        c.drain()
    actions = c.receive_job(payload_job.to_bytes(), NOW)
    assert [m.code for m in sent(actions, JobError)] == [code]
    assert not sent(actions, JobAck) and not started(actions)
    assert c.idle


def test_full_queue_answers_overloaded() -> None:
    c = core(max_queue=1)
    c.receive_job(job(1).to_bytes(), NOW)  # running
    c.receive_job(job(2).to_bytes(), NOW)  # queued
    actions = c.receive_job(job(3).to_bytes(), NOW)
    assert [m.code for m in sent(actions, JobError)] == ["overloaded"]
    assert c.counters.rejected == 1 and c.heartbeat(NOW).queue_depth == 1


def test_zero_queue_still_takes_a_job_when_idle() -> None:
    c = core(max_queue=0)
    assert started(c.receive_job(job(1).to_bytes(), NOW)) == ["j1"]
    assert [m.code for m in sent(c.receive_job(job(2).to_bytes(), NOW), JobError)] == ["overloaded"]


def test_duplicate_job_id_is_ignored() -> None:
    c = core()
    c.receive_job(job(1).to_bytes(), NOW)
    assert c.receive_job(job(1).to_bytes(), NOW) == []
    assert c.counters.duplicates == 1


def test_jobs_wait_while_loading_and_start_when_ready() -> None:
    c = WorkerCore("w1", engine="bark", model="m", pid=1, interval_s=0.5)
    assert c.heartbeat(NOW).state == "loading"
    assert started(c.receive_job(job(1).to_bytes(), NOW)) == []
    c.warming()
    assert c.heartbeat(NOW).state == "warming"
    assert started(c.ready(NOW)) == ["j1"]
    assert c.heartbeat(NOW).state == "ready"


def test_expired_while_queued_is_dropped_at_start() -> None:
    c = core()
    c.receive_job(job(1).to_bytes(), NOW)
    c.receive_job(job(2, expires_at=NOW + 1).to_bytes(), NOW)
    c.receive_job(job(3).to_bytes(), NOW)
    actions = c.job_done("j1", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW + 2)
    assert [m.code for m in sent(actions, JobError)] == ["expired"]
    assert started(actions) == ["j3"]


def test_cancel_drops_queued_and_stops_running() -> None:
    c = core()
    for n in (1, 2, 3):
        c.receive_job(job(n, session="s1" if n < 3 else "s2").to_bytes(), NOW)
    actions = c.receive_cancel(Cancel(session_id="s1").to_bytes())
    assert [(m.job_id, m.code) for m in sent(actions, JobError)] == [("j2", "cancelled")]
    assert [a.job_id for a in actions if isinstance(a, Stop)] == ["j1"]
    after = c.job_failed("j1", EngineCancelled("cancelled"), NOW)
    assert [m.code for m in sent(after, JobError)] == ["cancelled"]
    assert started(after) == ["j3"]
    assert c.counters.cancelled == 2
    by_id = c.receive_cancel(Cancel(job_ids=("j3",)).to_bytes())
    assert [a.job_id for a in by_id if isinstance(a, Stop)] == ["j3"]


def test_cancel_for_unknown_jobs_does_nothing() -> None:
    c = core()
    c.receive_job(job(1).to_bytes(), NOW)
    assert c.receive_cancel(Cancel(job_ids=("other",)).to_bytes()) == []


def test_drain_refuses_queue_and_keeps_running() -> None:
    c = core()
    c.receive_job(job(1).to_bytes(), NOW)
    c.receive_job(job(2).to_bytes(), NOW)
    actions = c.drain()
    assert [(m.job_id, m.code) for m in sent(actions, JobError)] == [("j2", "draining")]
    assert c.heartbeat(NOW).state == "draining" and c.heartbeat(NOW).jobs_in_flight == 1
    done = c.job_done("j1", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW)
    assert sent(done, JobDone) and not started(done)
    assert c.idle


def test_engine_unavailable_during_a_job_makes_worker_unavailable() -> None:
    c = core()
    c.receive_job(job(1).to_bytes(), NOW)
    c.receive_job(job(2).to_bytes(), NOW)
    actions = c.job_failed("j1", EngineUnavailable("model gone"), NOW)
    assert [(m.job_id, m.code) for m in sent(actions, JobError)] == [
        ("j1", "worker_unavailable"),
        ("j2", "worker_unavailable"),
    ]
    beat = c.heartbeat(NOW)
    assert beat.state == "unavailable" and beat.reason == "model gone"


def test_error_codes_from_exceptions_and_internal_errors_hide_details() -> None:
    c = core(max_queue=4)
    for n in (1, 2):
        c.receive_job(job(n).to_bytes(), NOW)
    (timeout,) = sent(c.job_failed("j1", EngineTimeout("slow"), NOW), JobError)
    (internal,) = sent(c.job_failed("j2", RuntimeError("secret path /x"), NOW), JobError)
    assert timeout.code == "engine_timeout"
    assert internal.code == "internal_error" and "secret" not in internal.message


def test_batches_group_jobs_of_one_voice() -> None:
    c = core(max_batch=3, max_queue=8)
    c.receive_job(job(1).to_bytes(), NOW)  # starts alone
    for n, voice in ((2, "maya"), (3, "miles"), (4, "maya"), (5, "maya"), (6, "maya")):
        c.receive_job(job(n, voice=voice).to_bytes(), NOW)
    actions = c.job_done("j1", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW)
    assert started(actions) == ["j2", "j4", "j5"]
    assert c.heartbeat(NOW).jobs_in_flight == 3
    for n in (2, 4):
        assert not started(
            c.job_done(f"j{n}", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW)
        )
    assert started(c.job_done("j5", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW)) == ["j3"]


def test_rtf_is_compute_over_audio() -> None:
    c = core()
    assert c.heartbeat(NOW).rtf == 0.0
    c.receive_job(job(1).to_bytes(), NOW)
    c.job_done("j1", chunks=1, samples=48_000, sample_rate=24_000, synth_s=1.0, now=NOW)
    c.receive_job(job(2).to_bytes(), NOW)
    c.job_done("j2", chunks=1, samples=24_000, sample_rate=24_000, synth_s=2.0, now=NOW)
    assert c.heartbeat(NOW).rtf == pytest.approx(1.0)


def test_heartbeat_fields_and_sequence() -> None:
    c = core()
    a, b = c.heartbeat(NOW), c.heartbeat(NOW + 0.5)
    assert isinstance(a, Heartbeat) and (a.seq, b.seq) == (1, 2)
    assert (a.worker_id, a.pid, a.engine, a.model, a.interval_s, a.sent_at) == (
        "w1",
        42,
        "bark",
        "m",
        0.5,
        NOW,
    )
    assert a.reason is None
    assert decode_worker_message(a.to_bytes()) == a


@pytest.mark.parametrize(
    ("payload", "answered_code"),
    [
        (b"\xff\xfe", None),
        (b"not json", None),
        (b"[]", None),
        (json.dumps({"type": "job", "job_id": "j9", "reply_to": REPLY}).encode(), "bad_field"),
        (json.dumps(job(9).to_dict() | {"seq": "1"}).encode(), "bad_field"),
        (json.dumps(job(9).to_dict() | {"text": "   "}).encode(), "empty_text"),
        (json.dumps(job(9).to_dict() | {"extra": 1}).encode(), "bad_field"),
        (json.dumps(job(9).to_dict() | {"reply_to": "sesame/+/x"}).encode(), None),
        (json.dumps(job(9).to_dict() | {"job_id": "a/b"}).encode(), None),
        (Cancel(job_ids=("j1",)).to_bytes(), None),
        (json.dumps(job(9).to_dict() | {"type": "cancel"}).encode(), "bad_field"),
    ],
)
def test_bad_job_payloads_are_counted_and_answered_when_possible(
    payload: bytes, answered_code: str | None
) -> None:
    c = core()
    actions = c.receive_job(payload, NOW)
    assert c.counters.bad_messages == 1 and c.idle
    codes = [m.code for m in sent(actions, JobError)]
    assert codes == ([answered_code] if answered_code else [])
    if answered_code:
        assert actions[0].topic == topics.job_events(REPLY, "j9")  # type: ignore[union-attr]


def test_bad_cancel_payload_is_counted() -> None:
    c = core()
    assert c.receive_cancel(b'{"type":"cancel"}') == []
    assert c.receive_cancel(job(1).to_bytes()) == []
    assert c.counters.bad_messages == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_no_payload_raises(payload: bytes) -> None:
    c = core()
    c.receive_job(payload, NOW)
    c.receive_cancel(payload)
    assert c.counters.bad_messages + c.counters.accepted >= 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["job", "cancel", "done", "fail"]),
            st.integers(0, 6),
            st.sampled_from(["s1", "s2"]),
        ),
        max_size=40,
    )
)
def test_every_acked_job_gets_exactly_one_final_answer(events: list[tuple[str, int, str]]) -> None:
    c = core(max_queue=3, max_batch=2)
    open_jobs: dict[str, int] = {}  # job id -> acks not yet followed by done/job_error
    for kind, n, session in events:
        job_id = f"j{n}"
        if kind == "job":
            actions = c.receive_job(job(n, session=session).to_bytes(), NOW)
        elif kind == "cancel":
            actions = c.receive_cancel(Cancel(session_id=session).to_bytes())
        elif kind == "done":
            actions = c.job_done(job_id, chunks=1, samples=10, sample_rate=24_000, synth_s=0.01, now=NOW)
        else:
            actions = c.job_failed(job_id, EngineError("x"), NOW)
        acked = {m.job_id for m in sent(actions, JobAck)}
        for m in sent(actions, JobAck):
            open_jobs[m.job_id] = open_jobs.get(m.job_id, 0) + 1
        for m in sent(actions, JobDone) + sent(actions, JobError):
            if kind == "job" and m.job_id == job_id and job_id not in acked:
                continue  # a refusal of this very submission
            assert open_jobs.get(m.job_id, 0) == 1, f"second final answer for {m.job_id}"
            open_jobs[m.job_id] -= 1
        assert len(c.running) <= 2 and len(c.queue) <= 3
        live = set(c.running) | {j.job_id for j in c.queue}
        assert len(live) == len(c.running) + len(c.queue)
        assert {k for k, v in open_jobs.items() if v} == live
