"""The Piper child speaks clause by clause, each clause streamed as its decoder makes it: the first
audio is a short piece, the pieces join without a click, and the clauses join without a seam (each
starts and ends in silence; the level does not jump)."""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from broker.audio import TARGET_RMS_DBFS, voice_gain
from synth_worker.piper_child import BusyLock, Voices, clauses, load_voices
from synth_worker.piper_process import packaged_model
from tests.conftest import T

pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")

HEADER = struct.Struct("<cII")
TEXT = "Well, I have booked the table for seven o'clock, and I will send you the address in a minute."
STREAMED = "I have booked the table for seven o'clock, and I will send you the address in a minute."


def test_phonemes_are_cut_after_each_clause_mark_and_lone_marks_are_dropped() -> None:
    assert clauses(list("wel, ai hav; the table.")) == [list("wel,"), list("ai hav;"), list("the table.")]
    assert clauses(list("ab")) == [list("ab")]
    assert clauses(list(", .")) == []
    assert clauses(list("ab, .")) == [list("ab,")]


def read_frame(stdout: object) -> tuple[bytes, int, bytes]:
    head = stdout.read(HEADER.size)  # type: ignore[attr-defined]
    kind, rid, size = HEADER.unpack(head)
    return kind, rid, stdout.read(size) if size else b""  # type: ignore[attr-defined]


Pieces = list[np.ndarray]
Spoken = tuple[dict[str, float], Pieces, Pieces, Pieces, Pieces, Pieces]


def say(
    proc: subprocess.Popen[bytes], rid: int, text: str, urgent: bool = False, need_s: float | None = None
) -> list[np.ndarray]:
    assert proc.stdin is not None and proc.stdout is not None
    request = {"op": "say", "id": rid, "text": text, "urgent": urgent}
    if need_s is not None:
        request["need_s"] = need_s
    proc.stdin.write(json.dumps(request).encode() + b"\n")
    proc.stdin.flush()
    pieces = []
    while (frame := read_frame(proc.stdout))[0] == b"A":
        pieces.append(np.frombuffer(frame[2], dtype="<i2").astype(np.float32) / 32768.0)
    assert frame[:2] == (b"D", rid)
    return pieces


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Spoken:
    """The child's ready report and the pieces of STREAMED, as the child sends them: alone, and
    beside another speaker (this test holding the busy lock as another child would). The child runs
    as ``up`` starts it on two cores (2 threads alone, 1 beside another speaker)."""
    model = packaged_model()
    lock = str(tmp_path_factory.mktemp("piper") / "busy")
    args = ["-m", "synth_worker.piper_child", "--model", str(model.onnx), "--config", str(model.config)]
    args += ["--threads", "2", "--shared-threads", "1", "--busy-lock", lock]
    proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    other = BusyLock(lock)
    try:
        kind, _, payload = read_frame(proc.stdout)
        assert kind == b"R", payload
        ready = json.loads(payload)
        alone = say(proc, 1, STREAMED, urgent=True)
        lookahead = say(proc, 4, STREAMED, need_s=5.0)
        needed_now = say(proc, 5, STREAMED)  # not urgent, need not said: as now (a fallback tier's)
        assert other.speak(), "a child that is not speaking holds no lock"
        beside = say(proc, 2, STREAMED, need_s=5.0)
        urgent = say(proc, 3, STREAMED, urgent=True)
        other.quiet()
        assert other.speak(), "the child let go of the lock when its request was done"
    finally:
        other.quiet()
        proc.stdin.close()
        proc.wait(30 * T)
    return ready, alone, beside, urgent, lookahead, needed_now


def test_alone_the_first_audio_is_a_short_piece_and_the_rest_follows(spoken: Spoken) -> None:
    """An urgent request (its listener waits), alone or beside another speaker: the first clause
    (about 2 s) streams: a first piece of at least 16 latent frames (more on a loaded machine:
    ``synth_worker.piper_pace``), then the rest; the second clause comes in one piece. So does a
    request whose need is not said (needed now). A lookahead request (needed 5 s later), alone or
    beside: each clause in one piece (all of it is decoded in time)."""
    ready, alone, beside, urgent, lookahead, needed_now = spoken
    rate = ready["sample_rate"]
    for pieces in (alone, urgent, needed_now):
        assert len(pieces) >= 3 and len(pieces[0]) % 256 == 0, [len(p) for p in pieces]
        assert 16 * 256 <= len(pieces[0]) < 0.5 * rate, "a short first piece of whole latent frames"
    assert len(beside) == len(lookahead) == 2, "two clauses, one piece each"
    for pieces in (alone, beside, urgent, lookahead, needed_now):
        assert 3.0 < sum(len(p) for p in pieces) / rate < 9.0
    assert -40.0 < ready["rms_dbfs"] < -10.0 and 0.05 < ready["peak"] <= 1.0


def test_the_pieces_join_without_a_click(spoken: Spoken) -> None:
    """At each join the step from one sample to the next is of the size of its neighbours' (a piece
    cut or placed wrong jumps; ``test_piper_graph`` shows the pieces equal one pass)."""
    ready, pieces, *_ = spoken
    near = int(ready["sample_rate"] * 0.002)
    audio = np.concatenate(pieces)
    steps = np.abs(np.diff(audio))
    join = 0
    for piece in pieces[:-1]:
        join += len(piece)
        around = np.concatenate([steps[join - 1 - near : join - 1], steps[join : join + near]])
        assert steps[join - 1] <= 3 * float(np.max(around)) + 0.01, f"a click at sample {join}"


@pytest.fixture(scope="module")
def voices() -> Voices:
    model = packaged_model()
    return load_voices(str(model.onnx), str(model.config), 1, None, None)


def test_clauses_join_without_a_seam(voices: Voices) -> None:
    speaker = voices.alone
    rate = speaker.voice.config.sample_rate
    spoken = [np.concatenate(list(speaker.audio(c))) for c in clauses(speaker.voice.phonemize(TEXT)[0])]
    assert len(spoken) == 3  # "Well," / "I have booked ... o'clock," / "and I will send ..."
    assert len(spoken[0]) / rate < 0.8 < len(spoken[1]) / rate
    edge = int(rate * 0.005)  # the 5 ms either side of every join
    for before, after in itertools.pairwise(spoken):
        assert float(np.max(np.abs(before[-edge:]))) < 0.01, "a clause ends in silence"
        assert float(np.max(np.abs(after[:edge]))) < 0.01, "a clause starts in silence"
    levels = [20 * np.log10(np.sqrt(np.mean(np.square(p[np.abs(p) > 0.01])))) for p in spoken]
    assert max(levels) - min(levels) < 6.0, f"the level jumps between clauses: {levels}"


def test_one_gain_per_voice_brings_the_calibration_to_the_target_level_without_clipping() -> None:
    assert voice_gain(TARGET_RMS_DBFS - 6.0, 0.3) == pytest.approx(10 ** (6 / 20))
    assert voice_gain(TARGET_RMS_DBFS - 6.0, 0.9) == pytest.approx(0.95 / 0.9)  # the peak limits it
    assert voice_gain(-200.0, 0.0) == pytest.approx(10 ** (24 / 20))  # never more than +24 dB


def test_without_its_busy_lock_a_child_keeps_to_its_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = packaged_model()
    voices = load_voices(str(model.onnx), str(model.config), 2, 1, str(tmp_path / "missing" / "busy"))
    assert voices.shared is None and voices.busy is None
    assert voices.alone.voice.session.get_session_options().intra_op_num_threads == 1
    assert voices.alone.decoder.session.get_session_options().intra_op_num_threads == 1
    assert "speaking on 1 thread(s) only" in capsys.readouterr().err
