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
    assert topics.parse(topics.worker_heartbeat(worker_id)) == topics.WorkerTopic(worker_id, "heartbeat")
    assert topics.parse(topics.worker_status(worker_id)) == topics.WorkerTopic(worker_id, "status")
    assert topics.parse(topics.worker_jobs(worker_id)) == topics.WorkerTopic(worker_id, "jobs")
    root = topics.reply_to("gw", worker_id)  # the worker id is a level of every reply topic
    assert topics.parse(topics.job_events(root, job_id)) == topics.ReplyTopic(
        "gw", worker_id, job_id, "events"
    )
    assert topics.parse(topics.job_audio(root, job_id)) == topics.ReplyTopic("gw", worker_id, job_id, "audio")
    assert topics.all_replies("gw") == f"{topics.reply_root('gw')}/#"
    assert topics.parse(topics.session_text(worker_id)) == topics.SessionTopic(worker_id, "text")
    assert topics.parse(topics.session_events(worker_id)) == topics.SessionTopic(worker_id, "events")
    assert topics.parse(topics.session_audio(worker_id)) == topics.SessionTopic(worker_id, "audio")
    assert topics.parse(topics.CANCEL) == topics.CancelTopic()


def test_everything_is_under_the_versioned_root() -> None:
    assert topics.worker_jobs("w1") == "sesame/v1/workers/w1/jobs"
    assert topics.CANCEL == "sesame/v1/cancel"
    assert topics.ALL_HEARTBEATS == "sesame/v1/workers/+/heartbeat"


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/workers/w1/heartbeat",
        "sesame/v1/replies/gw/j1/video",
        "sesame/v1/workers/w1/heartbeat/extra",
        "sesame/v1/workers/a+b/heartbeat",
        "sesame/v1/sessions/s1",
        "sesame/v1/unknown/x/y",
        "",
        "sesame/v1/replies/gw/w+1/j1/audio",
        "sesame/v1/replies/gw/w1//audio",
        "sesame/v1/replies/gw/w1/" + "j" * 65 + "/audio",
        "sesame/v1/replies/gw/w1/j1\n/audio",
        "sesame/v1/replies/gw/w1/j1/audio\n",
        "sesame/v1/workers/w1\n/heartbeat",
    ],
)
def test_parse_refuses_what_is_not_a_sesame_topic(topic: str) -> None:
    with pytest.raises(ProtocolError) as err:
        topics.parse(topic)
    assert err.value.code in ("bad_topic", "bad_id")
