"""A streamed clause's pieces, sized to the decoder's speed (synth_worker.piper_pace): short first
on an idle machine, longer first on a loaded one, and every piece decoded before the audio sent
before it has played, whenever that can be done at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth_worker.piper_pace import Pace, expected_cost

# The packaged voice: 256-sample hop at 22.05 kHz, 12 frames of overlap.
PACE = Pace(frame_s=256 / 22050, overlap=12)
IDLE = 0.0004  # wall seconds per decoded frame, 2 threads on an idle 2-core machine
LOADED = 0.0032  # ... as CI's loaded run decoded (56 frames still decoding 178 ms after the first audio)


def plan(frames: int, cost: float, pace: Pace = PACE) -> list[int]:
    """The piece sizes the child sends at a steady ``cost``, as ``decode_paced`` asks for them;
    the listener's audio counted from each piece's arrival."""
    sizes: list[int] = []
    ahead = 0.0
    while (sent := sum(sizes)) < frames:
        k = pace.next_piece(frames - sent, ahead, cost)
        context = min(pace.overlap, sent) + min(pace.overlap, frames - sent - k)
        ahead = max(0.0, ahead - (k + context) * cost) + k * pace.frame_s
        sizes.append(k)
    return sizes


def dry_spells(frames: int, cost: float, pace: Pace = PACE) -> list[float]:
    """Seconds the listener waits after the first audio, piece by piece, each piece reaching the
    listener ``reach_s`` after it is decoded (the first too: the waits are counted from its arrival)."""
    sizes, ahead, waits = plan(frames, cost, pace), 0.0, []
    for n, k in enumerate(sizes):
        sent = sum(sizes[:n])
        took = (k + min(pace.overlap, sent) + min(pace.overlap, frames - sent - k)) * cost
        if n:
            waits.append(max(0.0, took + pace.reach_s - ahead))
        ahead = max(0.0, ahead - took) + k * pace.frame_s
    return waits


def test_idle_a_short_first_piece_then_long_ones() -> None:
    assert plan(170, IDLE) == [16, 74, 80], "each piece the most that is decoded in time"
    assert plan(60, IDLE) == [16, 44]
    assert plan(10, IDLE) == [10], "a clause shorter than a first piece is one piece"


def test_loaded_the_first_piece_is_longer_and_the_later_ones_fit_in_the_audio_ahead() -> None:
    sizes = plan(170, LOADED)
    assert sizes[0] > 16 and min(sizes[1:-1]) >= PACE.least, sizes
    assert len(sizes) > 2, "the rest in several pieces: one would not be decoded in time"
    assert sum(sizes) == 170
    assert dry_spells(170, LOADED) == [0.0] * (len(sizes) - 1)


def test_the_old_fixed_pieces_ran_dry_at_cis_speed() -> None:
    """16 frames, then 32 (56 decoded): the cause of the gap CI heard, as this pace computes it."""
    assert not PACE.streams(170 - 16, 16 * PACE.frame_s, LOADED)
    assert 16 * PACE.frame_s * PACE.use - PACE.reach_s < (32 + 2 * 12) * LOADED


def test_slower_than_real_time_the_clause_is_one_piece() -> None:
    assert plan(170, 0.02) == [170], "no piece can keep ahead: one pass ends the wait soonest"


def test_a_speed_not_yet_measured_starts_short() -> None:
    assert PACE.next_piece(170, 0.0, 0.0) == 16
    assert PACE.next_piece(154, 0.1, 0.0) == 154


def test_when_the_decoder_slows_mid_clause_the_next_piece_restarts_the_stream() -> None:
    """Too little audio ahead for even ``least`` frames: a gap comes whatever is sent, so the next
    piece is one a stream can start from (not a sliver that would leave another gap after it)."""
    k = PACE.next_piece(150, 0.02, LOADED)
    assert k == PACE.first_piece(150, LOADED) and k > PACE.least


@given(
    frames=st.integers(min_value=1, max_value=600),
    cost=st.floats(min_value=0.0, max_value=0.03, allow_nan=False),
)
def test_pieces_cover_the_clause_and_never_run_dry_when_streaming_is_chosen(frames: int, cost: float) -> None:
    sizes = plan(frames, cost)
    assert sum(sizes) == frames and all(k > 0 for k in sizes)
    if len(sizes) > 1:
        assert max(dry_spells(frames, cost)) == 0.0, sizes


def test_the_expected_cost_is_the_cpu_per_frame_over_the_share_of_the_cores_got_now() -> None:
    assert expected_cost(0.0006, 0.030, 0.020) == pytest.approx(0.0006 / 1.5)  # two threads, idle
    assert expected_cost(0.0006, 0.010, 0.050) == pytest.approx(0.0006 / 0.2)  # a fifth of a core: loaded
    assert expected_cost(0.0, 0.010, 0.050) == 0.0, "never measured: no estimate"
    assert expected_cost(0.0006, 0.0, 0.050) == pytest.approx(0.0006 / 0.05), (
        "a share under 5 % is taken as 5 %"
    )
