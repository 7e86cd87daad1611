"""The JSON message contract: round trips, and strict rejection of bad payloads with codes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import ProtocolError
from broker.messages import (
    MAX_JOB_TEXT,
    Cancel,
    Heartbeat,
    Job,
    JobAck,
    JobDone,
    JobError,
    WorkerStatus,
    decode_worker_message,
    worker_messages,
)
from broker.wire import MAX_JSON_BYTES, _loads

ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
texts = st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != "")
reply_to = ids.map(lambda g: f"sesame/v1/replies/{g}")

jobs = st.builds(
    Job,
    job_id=ids,
    session_id=ids,
    seq=st.integers(0, 2**31),
    text=texts,
    voice=st.text(max_size=20),
    reply_to=reply_to,
    sample_rate=st.integers(8000, 48_000),
    expires_at=st.none() | finite,
    stamp=st.booleans(),
)
cancels = st.builds(
    Cancel, job_ids=st.lists(ids, min_size=1, max_size=5).map(tuple), session_id=st.none() | ids
)
acks = st.builds(JobAck, job_id=ids, worker_id=ids, queue_position=st.integers(0, 10_000))
dones = st.builds(
    JobDone,
    job_id=ids,
    worker_id=ids,
    chunks=st.integers(0, 10_000),
    samples=st.integers(0, 10**7),
    sample_rate=st.integers(8000, 48_000),
    engine=st.sampled_from(["bark", "espeak-ng"]),
    synth_ms=finite,
    stamps=st.just(()) | st.tuples(finite, finite, finite, finite),
)
errors = st.builds(
    JobError, job_id=ids, worker_id=ids, code=st.text(max_size=30), message=st.text(max_size=200)
)
heartbeats = st.builds(
    Heartbeat,
    worker_id=ids,
    pid=st.integers(1, 2**22),
    state=st.sampled_from(["loading", "warming", "ready", "draining", "unavailable", "offline"]),
    engine=st.text(max_size=20),
    model=st.text(max_size=40),
    seq=st.integers(0, 2**40),
    sent_at=finite,
    interval_s=st.floats(min_value=0.001, max_value=60),
    jobs_in_flight=st.integers(0, 64),
    queue_depth=st.integers(0, 1000),
    rtf=st.floats(min_value=0, max_value=100),
    reason=st.none() | st.text(max_size=100),
    version=st.text(max_size=10),
    batch_size=st.integers(0, 64),
    model_load_s=st.floats(min_value=0, max_value=600),
    semantic_ms=st.floats(min_value=0, max_value=1e6),
    coarse_ms=st.floats(min_value=0, max_value=1e6),
    fine_ms=st.floats(min_value=0, max_value=1e6),
    codec_ms=st.floats(min_value=0, max_value=1e6),
)
statuses = st.builds(
    WorkerStatus,
    worker_id=ids,
    state=st.sampled_from(["online", "offline"]),
    pid=st.none() | st.integers(1, 10**6),
)


@settings(max_examples=150, deadline=None)
@given(jobs | cancels | acks | dones | errors | heartbeats | statuses)
def test_every_message_round_trips_through_json_and_bytes(message: Any) -> None:
    assert decode_worker_message(message.to_json()) == message
    assert decode_worker_message(message.to_bytes()) == message


@settings(max_examples=150, deadline=None)
@given(jobs | cancels | acks | dones | errors | heartbeats | statuses)
def test_a_message_is_written_as_json_dumps_writes_its_dict(message: Any) -> None:
    """wire.py's one C encoder writes what ``json.dumps`` with the same arguments writes."""
    assert message.to_json() == json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False)


_JSON_PIECES = st.sampled_from(
    ["{", "}", "[", "]", '"a"', ":", ",", "1", "-0.5e3", "NaN", "true", "null", " ", "\n", '"\\ud800"', "x"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_JSON_PIECES, max_size=14).map("".join) | st.text(max_size=40))
def test_reading_json_agrees_with_json_loads(raw: str) -> None:
    """wire.py's straight call of the C scanner reads what ``json.loads`` reads, and fails where it fails."""
    _reads_as_json_loads_reads(raw)


@pytest.mark.parametrize(
    "raw",
    ['{"a":1}', ' {"a":1}', '{"a":1} ', '{"a":1}x', '{"a":1}}', '{"a":[1,{"b":2}]}', "{}", '{"a" 1}', "{"],
)
def test_reading_json_agrees_with_json_loads_at_the_edges(raw: str) -> None:
    _reads_as_json_loads_reads(raw)


def _reads_as_json_loads_reads(raw: str) -> None:
    try:
        expected: Any = json.loads(raw)
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            _loads(raw)
        return
    got = _loads(raw)
    assert json.dumps(got) == json.dumps(expected)  # NaN != NaN: compared as written


def test_registry_knows_every_type() -> None:
    assert worker_messages.types == sorted(
        ["job", "cancel", "ack", "done", "job_error", "heartbeat", "status"]
    )


GOOD_JOB: dict[str, Any] = Job(
    job_id="j1", session_id="s1", seq=0, text="Hi.", voice="maya", reply_to="sesame/v1/replies/gw"
).to_dict()


def variant(**changes: Any) -> bytes:
    data = {**GOOD_JOB, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b"\xff\xfe\xfa", "bad_encoding"),
        (b"[1, 2]", "bad_message"),
        (b'"job"', "bad_message"),
        (b'{"job_id": "x"}', "bad_message"),
        (b'{"type": 7}', "bad_message"),
        (b'{"type": "speak"}', "unknown_type"),
        (variant(seq="1"), "bad_field"),
        (variant(seq=True), "bad_field"),
        (variant(seq=1.5), "bad_field"),
        (variant(text=5), "bad_field"),
        (variant(expires_at="soon"), "bad_field"),
        (variant(sample_rate=None), "bad_field"),
        (variant(extra="field"), "bad_field"),
        (variant(voice=...), "bad_field"),  # missing
        (variant(text="   "), "empty_text"),
        (variant(text="x" * (MAX_JOB_TEXT + 1)), "text_too_long"),
        (variant(sample_rate=4000), "bad_sample_rate"),
        (variant(reply_to="other/topic"), "bad_topic"),
        (variant(reply_to="sesame/v1/replies/#"), "bad_topic"),
        (variant(job_id="a/b"), "bad_id"),
        (variant(session_id="+"), "bad_id"),
        (variant(seq=-1), "bad_field"),
        (b'{"type":"cancel"}', "bad_field"),
        (b'{"type":"cancel","job_ids":"j1"}', "bad_field"),
        (b'{"type":"status","worker_id":"w","state":"sleeping"}', "bad_field"),
        (
            b'{"type":"heartbeat","worker_id":"w","pid":1,"state":"ready","engine":"b","model":"m",'
            b'"seq":1,"sent_at":1.0,"interval_s":0}',
            "bad_field",
        ),
        (
            b'{"type":"heartbeat","worker_id":"w","pid":1,"state":"ready","engine":"b","model":"m",'
            b'"seq":1,"sent_at":1.0,"interval_s":0.5,"fine_ms":-1}',
            "bad_field",
        ),
        (b"{" + b" " * (MAX_JSON_BYTES + 1) + b"}", "too_large"),
    ],
)
def test_malformed_payloads_raise_protocol_error_with_code(payload: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_worker_message(payload)
    assert info.value.code == code


def test_oversized_text_string_is_rejected_before_parsing() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_worker_message("x" * (MAX_JSON_BYTES + 1))
    assert info.value.code == "too_large"


def test_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_worker_message("[" * 100_000 + "]" * 100_000)
    assert info.value.code in ("bad_json", "bad_message")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_decodes_or_raises_protocol_error(payload: bytes | str) -> None:
    try:
        decode_worker_message(payload)
    except ProtocolError as exc:
        assert exc.code


def test_a_heartbeat_without_the_worker_figures_still_decodes() -> None:
    """Older workers send no figures: they decode with zeros (the figures are optional)."""
    beat = decode_worker_message(
        b'{"type":"heartbeat","worker_id":"w","pid":1,"state":"ready","engine":"bark","model":"m",'
        b'"seq":1,"sent_at":1.0,"interval_s":0.5}'
    )
    assert isinstance(beat, Heartbeat)
    assert (beat.batch_size, beat.model_load_s) == (0, 0.0)
    assert beat.stage_ms() == {"semantic": 0.0, "coarse": 0.0, "fine": 0.0, "codec": 0.0}


def test_debug_stamp_fields_stay_off_the_wire_until_used() -> None:
    """A peer that predates them (strict decoding rejects unknown fields) still reads the message."""
    job = Job(job_id="j1", session_id="s1", seq=0, text="Hi.", voice="maya", reply_to="sesame/v1/replies/gw")
    assert "stamp" not in job.to_dict()
    assert dataclasses.replace(job, stamp=True).to_dict()["stamp"] is True
    done = JobDone(job_id="j1", worker_id="w", chunks=1, samples=10, sample_rate=24_000, engine="piper")
    assert "stamps" not in done.to_dict()
    stamped = decode_worker_message(json.dumps({**done.to_dict(), "stamps": [1.0, 2.0, 3.0, 4.0]}).encode())
    assert isinstance(stamped, JobDone) and stamped.stamps == (1.0, 2.0, 3.0, 4.0)


def test_stamps_must_name_every_worker_hop() -> None:
    done = JobDone(job_id="j1", worker_id="w", chunks=1, samples=10, sample_rate=24_000, engine="piper")
    with pytest.raises(ProtocolError) as info:
        decode_worker_message(json.dumps({**done.to_dict(), "stamps": [1.0, 2.0]}).encode())
    assert info.value.code == "bad_field"
