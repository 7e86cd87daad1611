"""The worker as a real subprocess against a real mosquitto: jobs, audio, heartbeats, failures."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from broker import topics
from broker.audio import from_pcm16, rms_dbfs
from broker.launcher import Mosquitto
from broker.messages import Cancel, Heartbeat, Job, JobDone, JobError, WorkerStatus, decode_worker_message
from tests.conftest import T

from .support import Listener, WorkerProcess

INTERVAL_S = 0.2


def make_job(text: str, *, worker: str, seq: int = 0, voice: str = "maya", **extra: object) -> Job:
    """A job for ``worker``: its replies go under its own id, the only place the ACL lets it write."""
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    return Job(
        job_id=f"j-{uuid.uuid4().hex[:10]}",
        session_id="s-1",
        seq=seq,
        text=text,
        voice=voice,
        reply_to=topics.reply_to(gateway, worker),
        **extra,  # type: ignore[arg-type]
    )


def reply_filter(job: Job) -> str:
    return f"{job.reply_to}/#"


def audio_of(frames: list) -> np.ndarray:  # type: ignore[type-arg]
    return np.concatenate([from_pcm16(f.payload) for f in frames]) if frames else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
def bark_worker(shared_mosquitto: Mosquitto, dev_model_dir: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        shared_mosquitto,
        # A fixed seed: random weights may sample Bark's end token early; seed 1 does not for these texts.
        {
            "SESAME_ENGINE": "bark",
            "SESAME_MODEL": str(dev_model_dir),
            "SESAME_MAX_LENGTH": "400",
            "SESAME_SEED": "1",
        },
    )
    try:
        worker.wait_log("worker_ready", 12 * T)
        yield worker
    finally:
        worker.close()


async def test_bark_job_streams_numbered_audio_matching_done(
    shared_mosquitto: Mosquitto, bark_worker: WorkerProcess
) -> None:
    job = make_job("Hello there, my friend.", seq=7, worker=bark_worker.worker_id)
    async with Listener(shared_mosquitto, [reply_filter(job)]) as mqtt:
        await mqtt.publish(topics.worker_jobs(bark_worker.worker_id), job.to_bytes())
        outcome = await mqtt.job(job.reply_to, job.job_id, 6 * T)

    assert outcome.ack is not None and outcome.ack.queue_position == 0
    assert isinstance(outcome.end, JobDone), outcome.end
    done = outcome.end
    assert done.engine == "bark" and done.sample_rate == 24_000 and done.worker_id == bark_worker.worker_id
    assert [f.index for f in outcome.frames] == list(range(len(outcome.frames)))
    assert {f.seq for f in outcome.frames} == {7}
    assert {f.sample_rate for f in outcome.frames} == {24_000}
    assert len(outcome.frames) == done.chunks
    audio = audio_of(outcome.frames)
    assert len(audio) == done.samples
    assert 0.3 < len(audio) / 24_000 < 10.0
    assert rms_dbfs(audio) > -40.0  # not silence
    assert max(len(f.payload) // 2 for f in outcome.frames) == 24_000 * 40 // 1000  # 40 ms chunks
    assert done.synth_ms > 0


async def test_heartbeats_keep_rhythm_while_bark_generates(
    shared_mosquitto: Mosquitto, bark_worker: WorkerProcess
) -> None:
    job = make_job("The quick brown fox jumps over the lazy dog.", worker=bark_worker.worker_id)
    beats_topic = topics.worker_heartbeat(bark_worker.worker_id)
    async with Listener(shared_mosquitto, [reply_filter(job), beats_topic]) as mqtt:
        await mqtt.heartbeat(bark_worker.worker_id, lambda hb: hb.state == "ready", 2 * T)
        await mqtt.publish(topics.worker_jobs(bark_worker.worker_id), job.to_bytes())
        outcome = await mqtt.job(job.reply_to, job.job_id, 8 * T)
        beats = [decode_worker_message(r.payload) for r in mqtt.received if r.topic == beats_topic]

    assert isinstance(outcome.end, JobDone)
    busy = [b for b in beats if isinstance(b, Heartbeat) and b.jobs_in_flight == 1]
    # Heartbeats kept coming while the job ran: one per interval of its synthesis, less the first and
    # last part intervals. (Not a fixed count: a fast machine runs this job in under four intervals.)
    intervals = int(outcome.end.synth_ms / 1000 / INTERVAL_S)
    assert intervals >= 2, f"the job ran {outcome.end.synth_ms} ms: too short to see a rhythm"
    assert len(busy) >= intervals - 1, f"only {len(busy)} heartbeats while the job ran {intervals} intervals"
    sent = [b.sent_at for b in beats if isinstance(b, Heartbeat)]
    gaps = np.diff(sent)
    assert gaps.max() <= 3 * INTERVAL_S, f"heartbeat gap {gaps.max():.3f}s (interval {INTERVAL_S}s)"
    assert [b.seq for b in beats] == sorted(b.seq for b in beats)
    assert all(b.state == "ready" and b.engine == "bark" for b in busy)


async def test_cancel_stops_running_bark_job(shared_mosquitto: Mosquitto, bark_worker: WorkerProcess) -> None:
    long_job = make_job(
        "This sentence is long enough to keep the tiny model busy for many seconds. " * 4,
        worker=bark_worker.worker_id,
    )
    beats_topic = topics.worker_heartbeat(bark_worker.worker_id)
    async with Listener(shared_mosquitto, [reply_filter(long_job), beats_topic]) as mqtt:
        await mqtt.publish(topics.worker_jobs(bark_worker.worker_id), long_job.to_bytes())
        mark = len(mqtt.received)
        await mqtt.heartbeat(bark_worker.worker_id, lambda hb: hb.jobs_in_flight == 1, 2 * T, start=mark)
        cancelled_at = time.monotonic()
        await mqtt.publish(topics.CANCEL, Cancel(job_ids=(long_job.job_id,)).to_bytes())
        outcome = await mqtt.job(long_job.reply_to, long_job.job_id, 2 * T)
        stopped_in = time.monotonic() - cancelled_at

        # The inference thread is free again: the next job starts at once and completes.
        follow = make_job("Next.", worker=bark_worker.worker_id)
        async with Listener(shared_mosquitto, [reply_filter(follow)]) as mqtt2:
            await mqtt2.publish(topics.worker_jobs(bark_worker.worker_id), follow.to_bytes())
            after = await mqtt2.job(follow.reply_to, follow.job_id, 4 * T)

    assert isinstance(outcome.end, JobError) and outcome.end.code == "cancelled"
    assert not any(isinstance(e, JobDone) for e in outcome.events)
    assert stopped_in < 2 * T
    assert after.ack is not None and after.ack.queue_position == 0
    assert isinstance(after.end, JobDone)


async def test_garbage_on_job_topic_does_not_kill_worker(
    shared_mosquitto: Mosquitto, bark_worker: WorkerProcess
) -> None:
    jobs_topic = topics.worker_jobs(bark_worker.worker_id)
    bad = make_job("x", worker=bark_worker.worker_id)
    wrong_types = bad.to_dict() | {"seq": "3"}  # decodable ids, wrong field type
    good = make_job("Still here.", worker=bark_worker.worker_id)
    async with Listener(shared_mosquitto, [reply_filter(bad), reply_filter(good)]) as mqtt:
        for garbage in (b"\xff\xfe\x00not json", b"{", b"[1,2]", b'{"type":"nope"}', b"x" * 300_000):
            await mqtt.publish(jobs_topic, garbage)
        await mqtt.publish(jobs_topic, json.dumps(wrong_types))
        rejected = await mqtt.job(bad.reply_to, bad.job_id, 2 * T)
        await mqtt.publish(jobs_topic, good.to_bytes())
        served = await mqtt.job(good.reply_to, good.job_id, 4 * T)

    assert isinstance(rejected.end, JobError) and rejected.end.code == "bad_field"
    assert isinstance(served.end, JobDone) and served.end.samples > 0
    assert bark_worker.alive
    assert len(bark_worker.events("bad_job_message")) >= 6


async def test_refusals_expired_too_long_unknown_voice(
    shared_mosquitto: Mosquitto, bark_worker: WorkerProcess
) -> None:
    expired = make_job("Too late.", expires_at=time.time() - 1.0, worker=bark_worker.worker_id)
    too_long = make_job("a" * 401, worker=bark_worker.worker_id)
    unknown_voice = make_job("Who am I?", voice="nobody", worker=bark_worker.worker_id)
    jobs = (expired, too_long, unknown_voice)
    async with Listener(shared_mosquitto, [reply_filter(j) for j in jobs]) as mqtt:
        for job in jobs:
            await mqtt.publish(topics.worker_jobs(bark_worker.worker_id), job.to_bytes())
        outcomes = [await mqtt.job(j.reply_to, j.job_id, 2 * T) for j in jobs]

    codes = [o.end.code if isinstance(o.end, JobError) else o.end for o in outcomes]
    assert codes == ["expired", "text_too_long", "unknown_voice"]
    assert outcomes[0].ack is None and outcomes[1].ack is None
    assert all(not o.frames for o in outcomes)


async def test_missing_model_heartbeats_unavailable_with_reason(mosquitto: Mosquitto, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "bark", "SESAME_MODEL": str(missing)})
    try:
        job = make_job("Anyone?", worker=worker.worker_id)
        async with Listener(
            mosquitto, [topics.worker_heartbeat(worker.worker_id), reply_filter(job)]
        ) as mqtt:
            beat = await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "unavailable", 4 * T)
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            outcome = await mqtt.job(job.reply_to, job.job_id, 2 * T)
            mark = len(mqtt.received)
            again = await mqtt.heartbeat(worker.worker_id, lambda hb: True, 2 * T, start=mark)
        assert beat.reason is not None and "does not exist" in beat.reason and str(missing) in beat.reason
        assert isinstance(outcome.end, JobError) and outcome.end.code == "worker_unavailable"
        assert again.state == "unavailable"  # still heartbeating, no crash loop
        assert worker.alive
        assert worker.events("engine_unavailable")[0]["level"] == "error"
    finally:
        worker.close()


async def test_espeak_worker_speaks(mosquitto: Mosquitto) -> None:
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "espeak-ng"})
    try:
        job = make_job("Hello from the offline voice.", seq=2, sample_rate=16_000, worker=worker.worker_id)
        async with Listener(
            mosquitto, [reply_filter(job), topics.worker_heartbeat(worker.worker_id)]
        ) as mqtt:
            beat = await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "ready", 4 * T)
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            outcome = await mqtt.job(job.reply_to, job.job_id, 2 * T)
        assert beat.engine == "espeak-ng" and beat.model.startswith("espeak-ng")
        assert isinstance(outcome.end, JobDone) and outcome.end.engine == "espeak-ng"
        audio = audio_of(outcome.frames)
        assert len(audio) == outcome.end.samples and len(outcome.frames) == outcome.end.chunks
        assert {f.sample_rate for f in outcome.frames} == {16_000}
        assert 1.0 < len(audio) / 16_000 < 5.0  # five words
        assert rms_dbfs(audio) > -30.0
    finally:
        worker.close()


async def test_sigkill_makes_status_offline_via_last_will(mosquitto: Mosquitto) -> None:
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "espeak-ng"})
    try:
        status_topic = topics.worker_status(worker.worker_id)
        async with Listener(mosquitto, [status_topic]) as mqtt:

            def status(state: str):  # type: ignore[no-untyped-def]
                return lambda r: r.topic == status_topic and decode_worker_message(r.payload).state == state

            online = await mqtt.wait_for(status("online"), 4 * T)
            worker.signal(signal.SIGKILL)
            offline = await mqtt.wait_for(status("offline"), 4 * T)
        message = decode_worker_message(offline.payload)
        assert isinstance(message, WorkerStatus) and message.worker_id == worker.worker_id
        assert offline.at > online.at
        assert worker.wait(T) == -signal.SIGKILL
        assert not worker.events("worker_stopped")  # it did not say goodbye: the will did
    finally:
        worker.close()

    # The offline status is retained: a newcomer reads it at once.
    async with Listener(mosquitto, [status_topic]) as late:
        retained = await late.wait_for(lambda r: r.topic == status_topic, 2 * T)
    assert decode_worker_message(retained.payload).state == "offline"  # type: ignore[attr-defined]


async def test_sigterm_finishes_job_then_goes_offline(mosquitto: Mosquitto) -> None:
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "espeak-ng"})
    try:
        job = make_job("Finish this sentence before you leave, please.", worker=worker.worker_id)
        status_topic = topics.worker_status(worker.worker_id)
        async with Listener(mosquitto, [reply_filter(job), status_topic]) as mqtt:
            await mqtt.wait_for(
                lambda r: r.topic == status_topic and decode_worker_message(r.payload).state == "online",  # type: ignore[attr-defined]
                4 * T,
            )
            worker.wait_log("worker_ready", 4 * T)
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            await mqtt.wait_for(lambda r: r.topic == topics.job_events(job.reply_to, job.job_id), 2 * T)
            worker.signal(signal.SIGTERM)
            outcome = await mqtt.job(job.reply_to, job.job_id, 2 * T)
            await mqtt.wait_for(
                lambda r: r.topic == status_topic and decode_worker_message(r.payload).state == "offline",  # type: ignore[attr-defined]
                4 * T,
            )
        assert worker.wait(4 * T) == 0
        assert isinstance(outcome.end, JobDone)
        assert worker.events("worker_draining") and worker.events("worker_stopped")
    finally:
        worker.close()


async def test_a_job_is_served_while_the_heartbeat_loop_sleeps(mosquitto: Mosquitto) -> None:
    """Jobs come in on the MQTT link and start at once: nothing waits for the heartbeat's rhythm
    (an hour here), a poll or a tick (issue 20)."""
    hourly = {"SESAME_ENGINE": "espeak-ng", "SESAME_HEARTBEAT_INTERVAL_MS": "3600000"}
    worker = WorkerProcess(mosquitto, hourly)
    try:
        job = make_job("Served between heartbeats.", worker=worker.worker_id)
        async with Listener(
            mosquitto, [reply_filter(job), topics.worker_heartbeat(worker.worker_id)]
        ) as mqtt:
            # the ready heartbeat is said when the state changes, not on the hour's tick
            await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "ready", 4 * T)
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            outcome = await mqtt.job(job.reply_to, job.job_id, 2 * T)
        assert isinstance(outcome.end, JobDone) and outcome.end.chunks == len(outcome.frames) > 0
    finally:
        worker.close()
