"""The load tester's pure parts: percentiles, the playout clock, the schedule, the report."""

from __future__ import annotations

import io
import itertools
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.load_requests import DEFAULT_TEXTS, LoadConfig, Outcome, RunResult, schedule, ws_url
from clients.loadtest import ProgressBar, main, read_texts
from clients.report import render, report
from clients.stats import Playout, Summary, median_interval, percentile, table

# --- percentiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        (list(range(1, 101)), 99, 99.01),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile_table(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_median_interval_is_the_order_statistics_around_the_middle() -> None:
    values = [float(v) for v in range(1, 101)]  # the 40th and 61st of 100 (1-based), at 95%
    assert median_interval(values) == (40.0, 61.0)
    assert median_interval(values, z=0.0) == (50.0, 51.0)  # the two middle values
    assert all(math.isnan(v) for v in median_interval([1.0]))


def test_median_interval_covers_the_true_median_about_95_times_in_100() -> None:
    rng = random.Random(20)
    trials, covered = 2000, 0
    for _ in range(trials):
        sample = sorted(rng.expovariate(1.0) for _ in range(301))  # skewed, as latencies are
        lo, hi = median_interval(sample)
        covered += lo <= math.log(2) <= hi
    assert 0.93 <= covered / trials <= 0.975


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
    st.sampled_from([0, 1, 25, 50, 90, 95, 99, 99.9, 100]),
)
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert percentile(sorted(values), q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_summary_ignores_nan_and_round_trips_through_json_dict() -> None:
    s = Summary.of([0.3, 0.1, float("nan"), 0.2])
    assert (s.count, s.max) == (3, 0.3)
    assert s.p50 == pytest.approx(0.2)
    d = s.to_dict(1000.0)
    assert d["p50"] == 200.0 and d["max"] == 300.0
    back = Summary.from_dict(d, 1000.0)
    assert back.p95 == pytest.approx(s.p95, abs=1e-5)
    empty = Summary.of([]).to_dict()
    assert empty["count"] == 0 and empty["p99"] is None


# --- the playout clock --------------------------------------------------------------------------------

# (arrival, duration) pieces -> (underruns, total gap)
PLAYOUT_CASES = [
    ("one piece", [(1.0, 0.04)], 0, 0.0),
    ("burst arrives before it is needed", [(0.0, 0.04), (0.001, 0.04), (0.002, 0.04)], 0, 0.0),
    ("each on time, exactly at the end", [(0.0, 0.04), (0.04, 0.04), (0.08, 0.04)], 0, 0.0),
    ("one late piece", [(0.0, 0.04), (0.05, 0.04)], 1, 0.01),
    ("two late pieces", [(0.0, 0.1), (0.2, 0.1), (0.5, 0.1)], 2, 0.3),
    ("a long sentence covers a slow next one", [(0.0, 2.0), (1.5, 1.0), (2.9, 1.0)], 0, 0.0),
    ("late after a covered one", [(0.0, 1.0), (0.5, 0.5), (1.7, 0.1)], 1, 0.2),
]


@pytest.mark.parametrize(
    ("name", "pieces", "underruns", "gap"), PLAYOUT_CASES, ids=[c[0] for c in PLAYOUT_CASES]
)
def test_playout_underruns(name: str, pieces: list[tuple[float, float]], underruns: int, gap: float) -> None:
    p = Playout()
    for arrival, duration in pieces:
        p.audio(arrival, duration)
    assert p.underruns == underruns, name
    assert p.gap_s == pytest.approx(gap), name
    assert p.audio_s == pytest.approx(sum(d for _, d in pieces))


def test_playout_prebuffer_absorbs_jitter_and_min_gap_is_not_an_underrun() -> None:
    late = [(0.0, 0.04), (0.05, 0.04), (0.09, 0.04)]
    plain, buffered, tolerant = Playout(), Playout(prebuffer_s=0.1), Playout(min_gap_s=0.02)
    for a, d in late:
        plain.audio(a, d)
        buffered.audio(a, d)
        tolerant.audio(a, d)
    assert plain.underruns == 1
    assert buffered.underruns == 0 and buffered.end == pytest.approx(0.1 + 0.12)
    assert tolerant.underruns == 0 and tolerant.gap_s == pytest.approx(0.01)


def test_played_positions_follow_each_other() -> None:
    p = Playout()
    first = p.audio(1.0, 0.5)
    second = p.audio(1.2, 0.5)  # queued behind the first
    third = p.audio(3.0, 0.5)  # after a gap
    assert (first.start, first.end, first.gap) == (1.0, 1.5, 0.0)
    assert (second.start, second.end, second.gap) == (1.5, 2.0, 0.0)
    assert third.start == 3.0 and third.gap == pytest.approx(1.0)


def test_playout_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        Playout(prebuffer_s=-1)
    with pytest.raises(ValueError):
        Playout().audio(0.0, -0.1)


@given(st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 0.2)), min_size=1, max_size=50))
def test_playout_invariants(steps: list[tuple[float, float]]) -> None:
    """Arrivals in order: playback never starts before arrival, pieces never overlap, and the
    silence plus the audio equals the playing span."""
    p = Playout()
    t = 0.0
    last_end = None
    first_start = None
    for delay, duration in steps:
        t += delay
        played = p.audio(t, duration)
        assert played.start >= t - 1e-12
        if last_end is not None:
            assert played.start >= last_end - 1e-12
        first_start = played.start if first_start is None else first_start
        last_end = played.end
    assert last_end is not None and first_start is not None
    assert (last_end - first_start) == pytest.approx(p.audio_s + p.gap_s, abs=1e-9)


# --- schedule and URLs ---------------------------------------------------------------------------------


def test_uniform_schedule_is_evenly_spaced_and_open_loop() -> None:
    offsets = schedule(10.0, 60.0)
    assert len(offsets) == 600
    assert offsets[0] == 0.0 and offsets[-1] == pytest.approx(59.9)
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(offsets))


def test_poisson_schedule_is_seeded_and_within_the_duration() -> None:
    a = schedule(20.0, 30.0, "poisson", seed=7)
    assert a == schedule(20.0, 30.0, "poisson", seed=7)
    assert a != schedule(20.0, 30.0, "poisson", seed=8)
    assert all(0 <= x < 30.0 for x in a) and a == sorted(a)
    assert 450 < len(a) < 750  # 600 expected; far outside this is a broken generator


@pytest.mark.parametrize("bad", [(0.0, 10.0), (5.0, 0.0), (-1.0, 1.0)])
def test_schedule_rejects_non_positive(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        schedule(*bad)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws"),
        ("https://voice.example/api", "wss://voice.example/api/ws"),
        ("ws://127.0.0.1:9/ws", "ws://127.0.0.1:9/ws"),
    ],
)
def test_ws_url(url: str, expected: str) -> None:
    assert ws_url(url) == expected


def test_ws_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError):
        ws_url("ftp://host/x")


# --- the report ---------------------------------------------------------------------------------------


def _outcome(i: int, **kw: object) -> Outcome:
    base: dict[str, object] = {
        "ttfa_s": 0.1 + i / 100,
        "ttfa_sched_s": 0.12 + i / 100,
        "total_s": 1.0,
        "audio_s": 2.0,
        "engines": ["espeak-ng", "espeak-ng"],
        "sentences": 2,
    }
    base.update(kw)
    return Outcome(i, i * 0.1, **base)  # type: ignore[arg-type]


def test_report_counts_errors_engines_fallbacks_and_underruns() -> None:
    cfg = LoadConfig(mode="ws", rate=10, duration_s=1.0)
    outs = [
        _outcome(0),
        _outcome(1, underruns=2, gap_s=0.05),
        _outcome(2, engines=["bark", "espeak-ng"], fallbacks=["bark->espeak-ng"]),
        _outcome(3, error="timeout", ttfa_s=None, ttfa_sched_s=None, total_s=None, audio_s=0.0, engines=[]),
        _outcome(4, error="speech_unavailable", errors=["speech_unavailable"]),
    ]
    rep = report(RunResult(cfg, outs, scheduled=6, dropped_by_cap=1, wall_s=2.0, schedule_s=1.0))
    assert rep["ok"] == 3 and rep["errors"] == 2 and rep["dropped_by_cap"] == 1
    assert rep["errors_by_kind"] == {"timeout": 1, "speech_unavailable": 1}
    assert rep["engines"] == {"espeak-ng": 7, "bark": 1}
    assert rep["fallbacks"] == {"bark->espeak-ng": 1}
    assert rep["underruns"] == {
        "sessions": 1,
        "of_sessions": 4,
        "events": 2,
        "silence_ms": 50.0,
        "prebuffer_ms": 0.0,
    }
    assert rep["achieved_rate"] == 1.5 and rep["offered_rate"] == 6.0
    ttfa = rep["latency_ms"]["ttfa"]  # type: ignore[index]
    assert ttfa["count"] == 3 and ttfa["max"] == pytest.approx(120.0)  # only successful requests
    text = render(rep)
    for needle in ("latency (ms)", "p50", "p99", "timeout 1", "bark->espeak-ng 1", "1 of 4 sessions"):
        assert needle in text


def test_report_of_tts_mode_has_no_underrun_section() -> None:
    rep = report(RunResult(LoadConfig(mode="tts"), [_outcome(0, engines=[])], 1, 0, 1.0, 1.0))
    assert rep["underruns"] is None
    assert "ttfb" in render(rep) and "underruns" not in render(rep)


def test_table_aligns_columns() -> None:
    out = table(["name", "n"], [["a", 1], ["longer", 100]]).splitlines()
    assert out[0].startswith("name") and out[2].endswith("  1") and out[3].endswith("100")
    assert len({len(line) for line in out}) == 1


def test_progress_bar_writes_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10.0, stream)
    for t in (0.0, 0.5, 5.0, 10.0):
        bar.draw(t, Counter(started=3, ok=2))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # 0%, 50%, 100%: one line per new tenth
    assert lines[-1].startswith("[" + "#" * 28 + "]")


def test_read_texts_and_argument_errors(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("One.\n\n  Two. Three.  \n", encoding="utf-8")
    assert read_texts(path) == ("One.", "Two. Three.")
    assert len(DEFAULT_TEXTS) >= 10
    assert main(["--rate", "0"]) == 2
    assert main(["--url", "ftp://x"]) == 2
