"""The failover state machine, rule by rule. Synchronous: time is a number we pass in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.messages import Heartbeat, WorkerStatus
from stream_server.core.actions import (
    WORKERS,
    CancelJob,
    Cause,
    Completed,
    FailedOver,
    GiveUp,
    ProbeTier,
    RunLocal,
    SendJob,
    Sentence,
    TierChanged,
    WorkerChanged,
)
from stream_server.core.failover import FailoverConfig
from stream_server.core.scheduler import Scheduler

CFG = FailoverConfig(
    tiers=(WORKERS, "edge-tts", "espeak-ng"),
    ack_timeout_s=1.0,
    timeout_s=10.0,
    stall_timeout_s=2.0,
    max_retries=3,
    retry_delay_s=1.0,
    missed_heartbeats=3,
    probe_interval_s=5.0,
)


def hb(
    worker_id: str, state: str = "ready", seq: int = 1, rtf: float = 0.0, interval: float = 0.5
) -> Heartbeat:
    return Heartbeat(
        worker_id=worker_id,
        pid=100,
        state=state,
        engine="bark",
        model="m",
        seq=seq,  # type: ignore[arg-type]
        sent_at=0.0,
        interval_s=interval,
        rtf=rtf,
    )


def sentence(seq: int = 0, turn: int = 0, session: str = "s1", text: str = "Hello there.") -> Sentence:
    return Sentence(session, turn, seq, text, "maya")


def of(actions: list[object], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def sched(*workers: str, cfg: FailoverConfig = CFG) -> Scheduler:
    s = Scheduler(cfg)
    for w in workers:
        s.heartbeat(hb(w), 0.0)
    return s


def test_ready_worker_gets_the_job() -> None:
    s = sched("w1")
    [job] = of(s.submit(sentence(), 0.0), SendJob)
    assert job.worker_id == "w1"


@pytest.mark.parametrize("state", ["loading", "warming", "draining", "unavailable"])
def test_worker_not_ready_gets_nothing(state: str) -> None:
    s = sched()
    s.heartbeat(hb("w1", state=state), 0.0)
    actions = s.submit(sentence(), 0.0)
    assert not of(actions, SendJob)
    assert [a.tier for a in of(actions, RunLocal)] == ["edge-tts"]


def test_least_loaded_worker_is_picked() -> None:
    s = sched("w1", "w2")
    first = of(s.submit(sentence(0), 0.0), SendJob)[0].worker_id
    second = of(s.submit(sentence(1), 0.0), SendJob)[0].worker_id
    assert {first, second} == {"w1", "w2"}


def test_dead_by_last_will_fails_over_to_next_tier() -> None:
    s = sched("w1")
    [job] = of(s.submit(sentence(), 0.0), SendJob)
    actions = s.status(WorkerStatus(worker_id="w1", state="offline"), 0.3)
    assert of(actions, WorkerChanged)[0].change.reason == "last_will"
    [fb] = of(actions, FailedOver)
    assert (fb.from_engine, fb.to_engine, fb.reason) == ("bark", "edge-tts", "worker_dead")
    assert of(actions, CancelJob)[0].job_id == job.job_id
    assert of(actions, RunLocal)[0].tier == "edge-tts"


def test_dead_by_missed_heartbeats() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.ack(job.job_id, 0.1)
    assert not of(s.handle_timer(1.4), WorkerChanged)  # 3 x 0.5 s not yet missed
    actions = s.handle_timer(1.6)
    assert of(actions, WorkerChanged)[0].change.reason == "missed_heartbeats"
    assert of(actions, RunLocal)


def test_heartbeats_keep_a_worker_alive() -> None:
    s = sched("w1")
    for i in range(1, 20):
        s.heartbeat(hb("w1", seq=i), i * 0.5)
        assert not of(s.handle_timer(i * 0.5 + 0.4), WorkerChanged)


def test_with_two_workers_a_dead_ones_job_moves_to_the_other_not_a_lower_tier() -> None:
    s = sched("w1", "w2")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    other = "w2" if job.worker_id == "w1" else "w1"
    actions = s.status(WorkerStatus(worker_id=job.worker_id, state="offline"), 0.2)
    [moved] = of(actions, SendJob)
    assert moved.worker_id == other
    assert not of(actions, RunLocal)


def test_ack_timeout() -> None:
    s = sched("w1")
    s.submit(sentence(), 0.0)
    assert not of(s.handle_timer(0.9), FailedOver)
    s.heartbeat(hb("w1", seq=2), 1.0)
    [fb] = of(s.handle_timer(1.1), FailedOver)
    assert fb.reason == "ack_timeout"


def test_first_audio_deadline_follows_reported_speed() -> None:
    s = sched()
    s.heartbeat(hb("w1", rtf=0.5), 0.0)
    job = of(s.submit(sentence(text="x" * 28), 0.0), SendJob)[0]
    s.ack(job.job_id, 0.1)
    # budget = 1.0 + 3 * 0.5 * (28 / 14) * 1 = 4.0 s after the ack
    for t in (1.0, 2.0, 3.0, 4.0):
        s.heartbeat(hb("w1", seq=int(t * 10), rtf=0.5), t)
        assert not of(s.handle_timer(t), FailedOver)
    s.heartbeat(hb("w1", seq=99, rtf=0.5), 4.2)
    [fb] = of(s.handle_timer(4.2), FailedOver)
    assert fb.reason == "first_audio_timeout"


def test_first_audio_deadline_is_bounded_by_sesame_timeout() -> None:
    s = sched(cfg=replace(CFG, timeout_s=2.0))
    s.heartbeat(hb("w1", rtf=50.0), 0.0)
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.ack(job.job_id, 0.0)
    s.heartbeat(hb("w1", seq=5, rtf=50.0), 2.05)
    assert of(s.handle_timer(2.1), FailedOver)[0].reason == "first_audio_timeout"


def test_stall_mid_sentence() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.ack(job.job_id, 0.1)
    assert s.chunk(job.job_id, 0.5) is not None
    s.heartbeat(hb("w1", seq=2), 2.0)
    assert not of(s.handle_timer(2.4), FailedOver)
    s.heartbeat(hb("w1", seq=3), 2.5)
    assert of(s.handle_timer(2.6), FailedOver)[0].reason == "stall"


def test_worker_error_retries_on_another_worker() -> None:
    s = sched("w1", "w2")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    actions = s.failed(job.job_id, "engine_error", 0.2)
    [retry] = of(actions, SendJob)
    assert retry.worker_id != job.worker_id


def test_retries_are_bounded_by_max_retries() -> None:
    s = sched("w1", "w2", "w3", cfg=replace(CFG, max_retries=1, retry_delay_s=100.0))
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    job2 = of(s.failed(job.job_id, "engine_error", 0.1), SendJob)[0]
    actions = s.failed(job2.job_id, "engine_error", 0.2)
    assert not of(actions, SendJob)
    assert of(actions, RunLocal)[0].tier == "edge-tts"


def test_failed_worker_cools_down_for_retry_delay() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(0), 0.0), SendJob)[0]
    s.failed(job.job_id, "engine_error", 0.0)
    assert not of(s.submit(sentence(1, turn=1), 0.5), SendJob)  # cooling down
    s.heartbeat(hb("w1", seq=2), 1.1)
    assert of(s.submit(sentence(2, turn=2), 1.1), SendJob)


def test_late_chunks_of_a_failed_attempt_are_ignored() -> None:
    s = sched("w1", "w2")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.failed(job.job_id, "engine_error", 0.1)
    assert s.chunk(job.job_id, 0.2) is None


def test_done_completes_once() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.chunk(job.job_id, 0.3)
    [done] = of(s.done(job.job_id, 0.5), Completed)
    assert done.engine == "bark" and done.first_audio_s == pytest.approx(0.3)
    assert s.done(job.job_id, 0.6) == []


def test_every_tier_failing_gives_up_with_the_text() -> None:
    s = sched()
    run = of(s.submit(sentence(text="Say this."), 0.0), RunLocal)[0]
    run2 = of(s.failed(run.job_id, "engine_unavailable", 0.1), RunLocal)[0]
    assert run2.tier == "espeak-ng"
    actions = s.failed(run2.job_id, "engine_error", 0.2)
    [give_up] = of(actions, GiveUp)
    assert give_up.sentence.text == "Say this."
    assert of(actions, FailedOver)[0].to_engine == "text"


def test_breaker_opens_skips_probes_and_closes() -> None:
    s = sched()
    run = of(s.submit(sentence(0), 0.0), RunLocal)[0]
    actions = s.failed(run.job_id, "engine_unavailable", 0.1)
    assert not of(actions, TierChanged)[0].available
    # The open tier is skipped at once for the next sentence.
    assert of(s.submit(sentence(1, turn=1), 0.2), RunLocal)[0].tier == "espeak-ng"
    assert not of(s.handle_timer(1.0), ProbeTier)
    probes = of(s.handle_timer(6.0), ProbeTier)
    assert [p.tier for p in probes] == ["edge-tts"]
    assert not of(s.handle_timer(6.1), ProbeTier)  # one probe at a time
    closed = s.probe_result("edge-tts", True, 6.5)
    assert of(closed, TierChanged)[0].available
    assert of(s.submit(sentence(2, turn=2), 7.0), RunLocal)[0].tier == "edge-tts"


def test_fallback_is_sticky_until_the_turn_ends() -> None:
    s = sched("w1", "w2", cfg=replace(CFG, max_retries=0))
    j0 = of(s.submit(sentence(0), 0.0), SendJob)[0]
    j1 = of(s.submit(sentence(1), 0.0), SendJob)[0]
    actions = s.failed(j0.job_id, "engine_error", 0.1)  # seq 0 falls to edge-tts
    moved = [a for a in of(actions, RunLocal) if a.sentence.seq == 1]
    assert moved and moved[0].tier == "edge-tts", "seq 1 follows seq 0 to the fallback voice"
    assert j1.job_id in [c.job_id for c in of(actions, CancelJob)]
    # Still the same turn: a new sentence starts on the fallback tier.
    assert of(s.submit(sentence(2), 0.2), RunLocal)[0].tier == "edge-tts"
    # Next turn: back to the primary.
    s.end_turn("s1", 0)
    assert of(s.submit(sentence(3, turn=1), 0.3), SendJob)


def test_cancel_session_cancels_its_jobs_only() -> None:
    s = sched("w1")
    a = of(s.submit(sentence(0, session="a"), 0.0), SendJob)[0]
    b = of(s.submit(sentence(0, session="b"), 0.0), SendJob)[0]
    cancels = of(s.cancel_session("a"), CancelJob)
    assert [c.job_id for c in cancels] == [a.job_id]
    assert s.chunk(a.job_id, 0.1) is None
    assert s.chunk(b.job_id, 0.1) is not None


def test_a_worker_back_from_the_dead_is_reported_up_even_while_cooling_down() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.failed(job.job_id, "engine_error", 0.05)  # cooled down
    s.status(WorkerStatus(worker_id="w1", state="offline"), 0.1)
    back = of(s.heartbeat(hb("w1", seq=2), 0.2), WorkerChanged)
    assert [(c.change.worker_id, c.change.up) for c in back] == [("w1", True)]
    assert not of(s.submit(sentence(1, turn=1), 0.3), SendJob), "still cooling down"
    s.heartbeat(hb("w1", seq=3), 1.2)
    assert of(s.submit(sentence(2, turn=2), 1.2), SendJob)


def test_a_broker_outage_does_not_cool_down_the_worker() -> None:
    s = sched("w1")
    job = of(s.submit(sentence(), 0.0), SendJob)[0]
    s.failed(job.job_id, "broker_unavailable", 0.1, Cause.BROKER)
    assert of(s.submit(sentence(1, turn=1), 0.2), SendJob)


def test_a_broker_move_sends_every_worker_job_in_flight_again_to_the_same_worker() -> None:
    """The link moved to another broker node: the replies in between are lost, so each worker job
    goes out again (not the worker's fault: the same worker, no cool-down)."""
    s = sched("w1")
    jobs = [of(s.submit(sentence(i), 0.0), SendJob)[0] for i in range(2)]
    out = s.broker_moved(0.5, 0.4)
    assert sorted(c.job_id for c in of(out, CancelJob)) == sorted(j.job_id for j in jobs)
    again = of(out, SendJob)
    assert [j.worker_id for j in again] == ["w1", "w1"]
    assert {j.job_id for j in again}.isdisjoint({j.job_id for j in jobs})
    assert {f.reason for f in of(out, FailedOver)} == {"broker_moved"}
    assert s.broker_moved(0.6, 0.55) != [] and of(s.submit(sentence(2, turn=1), 0.7), SendJob)


def test_a_worker_that_died_and_came_back_takes_jobs_at_once() -> None:
    s = sched("w1")
    s.submit(sentence(), 0.0)
    s.status(WorkerStatus(worker_id="w1", state="offline"), 0.1)
    s.heartbeat(hb("w1", seq=2), 0.3)
    assert of(s.submit(sentence(1, turn=1), 0.3), SendJob)


def test_background_sentences_only_go_to_workers() -> None:
    s = sched("w1")
    bg = Sentence("preload", 0, 0, "How can I help you today?", "maya", background=True)
    job = of(s.submit(bg, 0.0), SendJob)[0]
    actions = s.failed(job.job_id, "engine_error", 0.1)
    assert not of(actions, RunLocal) and of(actions, GiveUp)
    assert of(sched().submit(bg, 0.0), GiveUp)  # no worker: dropped, never spoken by a fallback


def test_an_ack_deadline_is_judged_only_up_to_what_the_gateway_has_read() -> None:
    """The worker acked in time but the gateway's reader was behind (a greedy client's audio
    ahead of the ack): the job is not failed over while its ack may be among the unread."""
    s = sched("w1")
    [job] = of(s.submit(sentence(), 0.0), SendJob)
    assert s.next_deadline() == 1.0
    assert s.handle_timer(1.2, read_through=0.8) == []  # read only up to 0.8: the ack may be unread
    assert s.unconfirmed() and s.next_deadline() is not None and s.next_deadline() != 1.0
    s.ack(job.job_id, 1.3)  # it was: read at 1.3
    assert not of(s.caught_up(1.3), FailedOver) and not s.unconfirmed()


def test_an_ack_that_never_came_fails_over_once_the_reader_has_caught_up() -> None:
    s = sched("w1")
    s.submit(sentence(), 0.0)
    assert s.handle_timer(1.2, read_through=0.8) == []
    [fb] = of(s.caught_up(1.4), FailedOver)
    assert fb.reason == "ack_timeout" and not s.unconfirmed()


def test_a_local_tier_waiting_for_its_slot_is_never_late_and_its_first_audio_counts_from_its_start() -> None:
    """The last resort (espeak-ng here) waits for a slot however long (a late voice beats text):
    that wait is not its engine's lateness. Its first audio is due ``timeout_s`` after the tier
    started it (the hub acks a local job when its slot comes), as a worker's after its ack."""
    s = sched(cfg=replace(CFG, tiers=("espeak-ng",)))
    [run] = of(s.submit(sentence(), 0.0), RunLocal)
    assert s.next_deadline() is None, "waiting for its slot: nothing is due"
    assert not of(s.handle_timer(60.0), FailedOver), "a minute in the tier's queue is not a failure"
    s.ack(run.job_id, 60.0)  # its slot came
    assert s.next_deadline() == pytest.approx(70.0)
    assert not of(s.handle_timer(69.9), FailedOver)
    [fb] = of(s.handle_timer(70.1), FailedOver)
    assert (fb.reason, fb.to_engine) == ("first_audio_timeout", "text")
