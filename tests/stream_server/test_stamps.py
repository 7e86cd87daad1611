"""The gateway's debug stamps: hops joined by job id, in hop order, bounded (pure, no clock)."""

from __future__ import annotations

from broker.messages import WORKER_HOPS
from stream_server.core.stamps import GATEWAY_HOPS, HopStamps


def test_a_jobs_hops_come_back_in_path_order_with_the_workers_stamps() -> None:
    stamps = HopStamps()
    stamps.text_in("s1", 1.0)
    stamps.text_in("s1", 1.5)  # the frame that completed the sentence is the last one before the cut
    stamps.cut("s1", 0, 2.0)
    stamps.job("j1", "s1", 0, 3.0)
    stamps.worker("j1", (4.0, 5.0, 6.0, 7.0))
    stamps.mark("j1", "audio_in", 8.0)
    stamps.mark("j1", "frame_queued", 9.0)
    stamps.mark("j1", "audio_in", 10.0)  # a later chunk does not move the first
    hops = stamps.take("j1", "s1", 0)
    assert hops is not None
    assert list(hops) == [*GATEWAY_HOPS[:3], *WORKER_HOPS, *GATEWAY_HOPS[3:]]
    assert list(hops.values()) == [1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert stamps.take("j1", "s1", 0) is None  # taken once


def test_a_job_that_was_not_stamped_gives_nothing_and_bad_worker_stamps_are_ignored() -> None:
    stamps = HopStamps()
    stamps.mark("other", "audio_in", 1.0)
    assert stamps.take("other", "s1", 0) is None
    stamps.job("j2", "s1", 3, 2.0)  # no cut seen (a preload): the job's own hops still count
    stamps.worker("j2", (1.0,))
    assert stamps.take("j2", "s1", 3) == {"job_queued": 2.0}


def test_held_stamps_are_bounded_oldest_first() -> None:
    stamps = HopStamps(limit=2)
    for n in range(3):
        stamps.cut("s", n, float(n))
        stamps.job(f"j{n}", "s", n, float(n))
    assert stamps.take("j0", "s", 0) is None
    assert stamps.take("j2", "s", 2) == {"cut": 2.0, "job_queued": 2.0}
