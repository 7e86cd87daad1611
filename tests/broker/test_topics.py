"""Topic names: ids are single topic levels without wildcards; parsing inverts building."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import topics
from broker.errors import ProtocolError

ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z", fullmatch=True)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a+b", "w#1", "a b", "x" * 65, "é", "a\x00"])
def test_check_id_rejects_topic_specials_and_junk(bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        topics.check_id(bad)
    assert info.value.code == "bad_id"


@pytest.mark.parametrize(
    "build", [topics.worker_heartbeat, topics.worker_status, topics.worker_jobs, topics.reply_root]
)
def test_builders_refuse_bad_ids(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError):
        build("a/#")


@given(ids, ids)
def test_parsers_invert_builders(worker_id: str, job_id: str) -> None:
    assert topics.worker_id_of(topics.worker_heartbeat(worker_id)) == worker_id
    assert topics.worker_id_of(topics.worker_status(worker_id)) == worker_id
    root = topics.reply_root(worker_id)
    assert topics.reply_parts(topics.job_events(root, job_id)) == (job_id, "events")
    assert topics.reply_parts(topics.job_audio(root, job_id)) == (job_id, "audio")
    assert topics.session_id_of(topics.session_text(worker_id)) == worker_id


def test_everything_is_under_the_versioned_root() -> None:
    assert topics.worker_jobs("w1") == "sesame/v1/workers/w1/jobs"
    assert topics.CANCEL == "sesame/v1/cancel"
    assert topics.ALL_HEARTBEATS == "sesame/v1/workers/+/heartbeat"
    with pytest.raises(ProtocolError):
        topics.worker_id_of("other/v1/workers/w1/heartbeat")
    with pytest.raises(ProtocolError):
        topics.reply_parts("sesame/v1/replies/gw/j1/video")
