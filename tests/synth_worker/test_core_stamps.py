"""Debug stamps: only a job that asked for them (``Job.stamp``) returns the worker's hop stamps."""

from __future__ import annotations

import dataclasses

from broker import topics
from broker.messages import Job, JobDone
from synth_worker.core import WorkerCore
from synth_worker.job_actions import Send
from synth_worker.worker.jobs import with_stamps

NOW = 1_000.0
STAMPS = (1.0, 2.0, 3.0, 4.0)


def done_of(stamp: bool) -> JobDone:
    core = WorkerCore("w1", engine="piper", model="m", pid=42, interval_s=0.5)
    core.ready(NOW)
    job = Job(job_id="j1", session_id="s1", seq=0, text="Hi.", voice="maya", reply_to=topics.reply_root("gw"))
    job = dataclasses.replace(job, stamp=stamp)
    core.receive_job(job.to_bytes(), NOW)
    actions = core.job_done("j1", chunks=1, samples=10, sample_rate=24_000, synth_s=0.1, now=NOW)
    actions = with_stamps(actions, job, STAMPS)
    (done,) = [a.message for a in actions if isinstance(a, Send) and isinstance(a.message, JobDone)]
    return done


def test_a_stamped_job_returns_its_stamps_and_others_send_none() -> None:
    assert done_of(stamp=True).stamps == STAMPS
    unstamped = done_of(stamp=False)
    assert unstamped.stamps == () and "stamps" not in unstamped.to_dict()
