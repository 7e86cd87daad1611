"""A Piper worker as a real subprocess against a real mosquitto: audio, heartbeats, cancel, reasons."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import topics
from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from broker.messages import Cancel, Heartbeat, JobDone, JobError, decode_worker_message
from tests.conftest import T

from .support import Listener, WorkerProcess
from .test_worker_process import audio_of, make_job, reply_filter

pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")


@pytest.fixture(scope="module")
def piper_worker(shared_mosquitto: Mosquitto) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(shared_mosquitto, {"SESAME_ENGINE": "piper", "SESAME_MAX_LENGTH": "1000"})
    try:
        worker.wait_log("worker_ready", 6 * T)
        yield worker
    finally:
        worker.close()


async def test_piper_job_streams_24khz_speech_over_mqtt(
    shared_mosquitto: Mosquitto, piper_worker: WorkerProcess
) -> None:
    job = make_job(
        "Hello there, my friend. It is good to hear you again.", seq=3, worker=piper_worker.worker_id
    )
    beats = topics.worker_heartbeat(piper_worker.worker_id)
    async with Listener(shared_mosquitto, [reply_filter(job), beats]) as mqtt:
        beat = await mqtt.heartbeat(piper_worker.worker_id, lambda hb: hb.state == "ready", 2 * T)
        await mqtt.publish(topics.worker_jobs(piper_worker.worker_id), job.to_bytes())
        outcome = await mqtt.job(job.reply_to, job.job_id, 4 * T)

    assert isinstance(beat, Heartbeat) and beat.engine == "piper" and beat.model == "piper en_US-joe-medium"
    assert isinstance(outcome.end, JobDone), outcome.end
    done = outcome.end
    assert done.engine == "piper" and done.sample_rate == 24_000
    assert {f.sample_rate for f in outcome.frames} == {24_000} and {f.seq for f in outcome.frames} == {3}
    assert [f.index for f in outcome.frames] == list(range(done.chunks))
    audio = audio_of(outcome.frames)
    assert len(audio) == done.samples
    assert 2.0 < len(audio) / 24_000 < 7.0  # 53 characters of speech
    assert rms_dbfs(audio) == pytest.approx(-20.0, abs=2.0)  # speech at the project's level


async def test_cancel_stops_a_running_piper_job(
    shared_mosquitto: Mosquitto, piper_worker: WorkerProcess
) -> None:
    # Twenty sentences (under SESAME_MAX_LENGTH), ~40 s of speech: Piper sends each as it is made.
    job = make_job(
        " ".join(f"This is sentence number {n} of the story." for n in range(20)),
        worker=piper_worker.worker_id,
    )
    async with Listener(shared_mosquitto, [reply_filter(job)]) as mqtt:
        await mqtt.publish(topics.worker_jobs(piper_worker.worker_id), job.to_bytes())
        audio_topic = topics.job_audio(job.reply_to, job.job_id)
        await mqtt.wait_for(lambda r: r.topic == audio_topic, 4 * T)
        await mqtt.publish(topics.CANCEL, Cancel(job_ids=(job.job_id,)).to_bytes())
        outcome = await mqtt.job(job.reply_to, job.job_id, 4 * T)
    assert isinstance(outcome.end, JobError) and outcome.end.code == "cancelled"
    assert len(audio_of(outcome.frames)) / 24_000 < 20.0  # the cancel cut it short


async def test_missing_voice_files_heartbeat_unavailable_with_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    missing = tmp_path / "nobody.onnx"
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "piper", "SESAME_PIPER_VOICE": str(missing)})
    try:
        async with Listener(mosquitto, [topics.worker_heartbeat(worker.worker_id)]) as mqtt:
            beat = await mqtt.heartbeat(worker.worker_id, lambda hb: hb.state == "unavailable", 4 * T)
        assert beat.reason == f"Piper voice file missing: {missing}"
        assert worker.alive  # it stays up and says why: no crash loop
    finally:
        worker.close()


async def test_batched_piper_jobs_each_get_their_own_audio(mosquitto: Mosquitto) -> None:
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "piper", "SESAME_MAX_BATCH": "2"})
    try:
        worker.wait_log("worker_ready", 6 * T)
        short, long = (
            make_job("Yes.", seq=0, worker=worker.worker_id),
            make_job("This one is a good deal longer than the other one.", seq=1, worker=worker.worker_id),
        )
        async with Listener(mosquitto, [reply_filter(short), reply_filter(long)]) as mqtt:
            for job in (short, long):
                await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            done_short = await mqtt.job(short.reply_to, short.job_id, 4 * T)
            done_long = await mqtt.job(long.reply_to, long.job_id, 4 * T)
        assert isinstance(done_short.end, JobDone) and isinstance(done_long.end, JobDone)
        assert len(audio_of(done_short.frames)) / 24_000 < 1.2
        assert len(audio_of(done_long.frames)) / 24_000 > 2.0
        assert {f.seq for f in done_short.frames} == {0} and {f.seq for f in done_long.frames} == {1}
    finally:
        worker.close()


async def test_sigterm_drains_a_running_piper_job_then_goes_offline(mosquitto: Mosquitto) -> None:
    worker = WorkerProcess(mosquitto, {"SESAME_ENGINE": "piper"})
    try:
        worker.wait_log("worker_ready", 6 * T)
        job = make_job(
            "Finish this sentence before you leave, please. And this one too, if you can.",
            worker=worker.worker_id,
        )
        status_topic = topics.worker_status(worker.worker_id)
        async with Listener(mosquitto, [reply_filter(job), status_topic]) as mqtt:
            await mqtt.publish(topics.worker_jobs(worker.worker_id), job.to_bytes())
            await mqtt.wait_for(lambda r: r.topic == topics.job_events(job.reply_to, job.job_id), 2 * T)
            worker.signal(signal.SIGTERM)
            outcome = await mqtt.job(job.reply_to, job.job_id, 2 * T)
            await mqtt.wait_for(
                lambda r: r.topic == status_topic and decode_worker_message(r.payload).state == "offline",  # type: ignore[attr-defined]
                4 * T,
            )
        assert worker.wait(4 * T) == 0
        assert isinstance(outcome.end, JobDone) and len(audio_of(outcome.frames)) / 24_000 > 3.0
        assert worker.events("worker_draining") and worker.events("worker_stopped")
    finally:
        worker.close()
