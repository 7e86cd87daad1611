"""Replay's pure parts: trace parsing, sentence alignment, per-sentence latencies, regression
comparison, the HTML timeline; and the gateway's recorder writing traces replay reads back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from broker.ws_protocol import Flush, Speak, Start, Text
from clients.replay import main
from clients.replay_analysis import Received, Sent, TextClock, analyze_session, compare, summarize
from clients.report import render_comparison, render_summary, results_dict
from clients.timeline import render_html
from clients.trace import Trace, TraceError, TraceEvent, dump_events, load_trace, parse_trace
from clients.traces.make_traces import build, tokenize
from stream_server.hub.recorder import Recorder

TRACES = Path(__file__).resolve().parents[2] / "clients" / "traces"

# --- trace parsing -------------------------------------------------------------------------------------


def test_parse_orders_each_session_and_keeps_meta() -> None:
    lines = [
        '{"meta": {"name": "x"}}',
        '{"session": "b", "t": 0.15, "text": "Hi."}',
        '{"session": "a", "t": 0.2, "text": "lo"}',
        "",
        '{"session": "a", "t": 0.1, "text": "Hel"}',
        '{"session": "a", "t": 0.2, "flush": true}',
    ]
    trace = parse_trace(lines)
    assert trace.meta == {"name": "x"}
    assert [e.text for e in trace.sessions["a"]] == ["Hel", "lo", None]  # ties keep file order
    assert trace.text_of("a") == "Hello"
    assert trace.duration_s == 0.2 and trace.events == 4
    assert trace.max_concurrency() == 2  # b (0.15) falls inside a (0.1 - 0.2)
    assert (
        parse_trace(
            ['{"session": "a", "t": 0, "text": "x"}', '{"session": "b", "t": 1, "text": "y"}']
        ).max_concurrency()
        == 1
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"session": "a", "t": 1, "text": "x", "voice": "maya"}', "unknown key"),
        ('{"t": 1, "text": "x"}', "'session'"),
        ('{"session": "", "t": 1, "text": "x"}', "'session'"),
        ('{"session": "a", "text": "x"}', "'t'"),
        ('{"session": "a", "t": -1, "text": "x"}', "'t'"),
        ('{"session": "a", "t": "1", "text": "x"}', "'t'"),
        ('{"session": "a", "t": true, "text": "x"}', "'t'"),
        ('{"session": "a", "t": 1}', "either"),
        ('{"session": "a", "t": 1, "text": "x", "flush": true}', "either"),
        ('{"session": "a", "t": 1, "flush": false}', "'flush' must be true"),
        ('{"session": "a", "t": 1, "text": ""}', "'text'"),
        ('{"meta": {"a": 1}, "session": "a"}', "meta"),
    ],
)
def test_parse_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(TraceError, match=message) as info:
        parse_trace(['{"session": "ok", "t": 0, "text": "fine"}', line])
    assert "line 2" in str(info.value)


def test_empty_trace_is_an_error() -> None:
    with pytest.raises(TraceError, match="no events"):
        parse_trace(['{"meta": {}}'])


def test_dump_events_round_trips() -> None:
    events = (TraceEvent(0.0, "Hel"), TraceEvent(0.25, "lo."), TraceEvent(0.3, None))
    back = parse_trace(dump_events("s", events))
    assert [(e.t, e.text) for e in back.sessions["s"]] == [(0.0, "Hel"), (0.25, "lo."), (0.3, None)]


def test_shipped_traces_parse_and_one_has_concurrent_sessions() -> None:
    traces = {p.name: load_trace(p) for p in sorted(TRACES.glob("*.jsonl"))}
    assert len(traces) >= 3
    assert max(t.max_concurrency() for t in traces.values()) >= 4
    for name, trace in traces.items():
        assert trace.meta.get("sources"), name
        for events in trace.sessions.values():
            assert events[-1].flush, f"{name}: every session ends its turn"


def test_trace_generator_is_deterministic_and_matches_the_shipped_files(tmp_path: Path) -> None:
    paths = build(tmp_path, 2024)
    for path in paths:
        assert path.read_text(encoding="utf-8") == (TRACES / path.name).read_text(encoding="utf-8"), path.name
    trace = load_trace(paths[0])
    events = next(iter(trace.sessions.values()))
    assert 0.3 <= events[0].t <= 0.6  # time to first token
    tokens = [e for e in events if e.text is not None]
    mean = sum(len(e.text or "") for e in tokens) / len(tokens)
    assert 3.0 <= mean <= 6.0  # about 4 characters a token


def test_tokenize_joins_back_exactly() -> None:
    text = "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little money."
    tokens = tokenize(text, random.Random(1))
    assert "".join(tokens) == text and max(len(t) for t in tokens) <= 8


# --- aligning sentences with the text sent ---------------------------------------------------------------


def test_text_clock_finds_when_a_sentence_was_complete() -> None:
    clock = TextClock()
    for t, frag in [(0.0, "Hello th"), (0.1, "ere.  How"), (0.2, " are you?"), (0.3, " Hello there.")]:
        clock.feed(t, frag)
    assert clock.locate("Hello there.") == 0.1
    assert clock.locate("How are you?") == 0.2
    assert clock.locate("Hello there.") == 0.3  # the next occurrence, not the first again
    assert clock.locate("Not sent.") is None


def test_text_clock_matches_whitespace_normalized_sentences() -> None:
    clock = TextClock()
    clock.feed(1.0, "A line\n\nand   ")
    clock.feed(2.0, "more.")
    assert clock.locate("A line and more.") == 2.0


def _audio(t: float, seq: int, d: float = 0.5) -> Received:
    return Received(t, "audio", None, seq, d)


def _msg(t: float, **msg: object) -> Received:
    return Received(t, str(msg["type"]), msg)


def test_analyze_session_measures_ttfa_gap_and_stall() -> None:
    sent = [Sent(0.0, "One two. Th"), Sent(0.2, "ree four."), Sent(0.25, None)]
    received = [
        _msg(0.3, type="sentence_start", seq=0, turn=0, text="One two.", engine="espeak-ng", cached=False),
        _audio(0.35, 0),  # plays 0.35 - 0.85
        _audio(0.40, 0),  # queued: 0.85 - 1.35
        _msg(0.41, type="sentence_end", seq=0, samples=24000),
        _msg(0.41, type="sentence_start", seq=1, turn=0, text="Three four.", engine="espeak-ng", cached=True),
        _audio(1.50, 1),  # 0.15 s after the audio before it ended: a gap
        _audio(2.30, 1),  # 0.3 s after 2.0: a stall inside the sentence
        _msg(2.31, type="sentence_end", seq=1, samples=24000),
        _msg(2.31, type="turn_end", turn=0),
    ]
    r = analyze_session("s", sent, received)
    first, second = r.sentences
    assert first.ready_t == 0.0 and first.ttfa_s == pytest.approx(0.35)
    assert first.gap_s == pytest.approx(0.35)  # nothing played before: the whole wait is heard
    assert first.play_start == 0.35 and first.play_end == pytest.approx(1.35) and first.stalls == []
    assert second.ready_t == 0.2 and second.ttfa_s == pytest.approx(1.3) and second.cached
    assert second.gap_s == pytest.approx(0.15) and second.gap_from == pytest.approx(1.35)
    assert second.stalls == [(pytest.approx(2.0), 2.3)] and second.stall_s == pytest.approx(0.3)
    assert r.turns == 1 and r.flushes == [0.25] and len(r.fragments) == 2


def test_analyze_session_sentence_ready_late_is_not_a_gap() -> None:
    """Text that arrives after the previous audio ended: only the wait after it counts."""
    sent = [Sent(0.0, "A b. "), Sent(3.0, "C d."), Sent(3.0, None)]
    received = [
        _msg(0.1, type="sentence_start", seq=0, turn=0, text="A b.", engine="bark"),
        _audio(0.2, 0),  # ends at 0.7
        _msg(3.05, type="sentence_start", seq=1, turn=0, text="C d.", engine="bark"),
        _audio(3.1, 1),
    ]
    r = analyze_session("s", sent, received)
    assert r.sentences[1].gap_s == pytest.approx(0.1) and r.sentences[1].ttfa_s == pytest.approx(0.1)


def test_analyze_session_counts_restarts_fallbacks_errors_and_unmatched() -> None:
    sent = [Sent(0.0, "Hello there."), Sent(0.0, None)]
    received = [
        _msg(0.1, type="sentence_start", seq=0, turn=0, text="Hello there.", engine="bark"),
        _audio(0.2, 0),
        _msg(0.5, type="fallback", seq=0, reason="stall", **{"from": "bark", "to": "espeak-ng"}),
        _msg(
            0.6, type="sentence_start", seq=0, turn=0, text="Hello there.", engine="espeak-ng", restart=True
        ),
        _audio(0.7, 0),
        _msg(0.8, type="sentence_start", seq=1, turn=0, text="Something else.", engine="espeak-ng"),
        _msg(0.9, type="error", code="speech_unavailable", seq=1, text="Something else."),
    ]
    r = analyze_session("s", sent, received, failure=None)
    s0, s1 = r.sentences
    assert s0.restarts == 1 and s0.engine == "espeak-ng" and s0.fallbacks == ["bark->espeak-ng"]
    assert not s1.matched and s1.ready_t == 0.0 and s1.ttfa_s is None
    summary = summarize([r])
    assert summary["errors"] == {"speech_unavailable": 1}
    assert summary["unmatched"] == 1 and summary["restarts"] == 1 and summary["spoken"] == 1


def test_prebuffer_delays_the_first_audio() -> None:
    sent = [Sent(0.0, "Hi there."), Sent(0.0, None)]
    received = [
        _msg(0.1, type="sentence_start", seq=0, turn=0, text="Hi there.", engine="bark"),
        _audio(0.2, 0),
    ]
    r = analyze_session("s", sent, received, prebuffer_s=0.1)
    assert r.sentences[0].play_start == pytest.approx(0.3) and r.sentences[0].gap_s == pytest.approx(0.3)


# --- comparison ----------------------------------------------------------------------------------------


def _summary(
    p50: float, p95: float, gap95: float = 0.0, errors: int = 0, stalled: int = 0
) -> dict[str, object]:
    return {
        "ttfa_ms": {"p50": p50, "p95": p95},
        "gap_ms": {"p95": gap95},
        "errors": {"speech_unavailable": errors} if errors else {},
        "stalled_sentences": stalled,
    }


@pytest.mark.parametrize(
    ("old", "new", "regressed"),
    [
        (_summary(100, 200), _summary(110, 230), []),  # +10%, +15%: within 20%
        (_summary(100, 200), _summary(130, 200), ["ttfa p50 (ms)"]),
        (_summary(100, 200), _summary(100, 260), ["ttfa p95 (ms)"]),
        (_summary(10, 20), _summary(13, 24), []),  # +30% but only 3-4 ms: below min_delta_ms
        (_summary(100, 200, gap95=0), _summary(100, 200, gap95=50), ["gap p95 (ms)"]),
        (_summary(100, 200), _summary(50, 100, errors=1), ["errors"]),
        (_summary(100, 200, stalled=2), _summary(100, 200, stalled=3), ["stalled_sentences"]),
        (_summary(100, 200, errors=2), _summary(100, 200, errors=1), []),
    ],
)
def test_compare_flags_regressions(
    old: dict[str, object], new: dict[str, object], regressed: list[str]
) -> None:
    findings = compare(old, new, threshold=0.2, min_delta_ms=5.0)
    assert [f.metric for f in findings if f.regression] == regressed
    assert "REGRESSION" in render_comparison(findings, "old.json") or not regressed


def test_compare_skips_metrics_missing_on_either_side() -> None:
    findings = compare({"ttfa_ms": {"p50": None}}, _summary(100, 100))
    assert not any(f.regression for f in findings)


def test_replay_cli_refuses_bad_traces_and_arguments(tmp_path: Path) -> None:
    """Exit status 2 without a server: a bad trace, a bad speed, a missing file."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"session": "a"}\n', encoding="utf-8")
    assert main([str(bad)]) == 2
    assert main([str(TRACES / "udhr_two_turns.jsonl"), "--speed", "0"]) == 2
    assert main([str(tmp_path / "missing.jsonl")]) == 2


# --- results and the timeline --------------------------------------------------------------------------


def _results() -> dict[str, object]:
    sent = [Sent(0.0, "One <two> & three. "), Sent(0.4, "Four."), Sent(0.45, None)]
    received = [
        _msg(0.3, type="sentence_start", seq=0, turn=0, text="One <two> & three.", engine="bark"),
        _audio(0.35, 0),
        _msg(0.5, type="sentence_start", seq=1, turn=0, text="Four.", engine="espeak-ng", cached=True),
        _audio(1.2, 1),
        _audio(2.0, 1),
        _msg(2.1, type="turn_end", turn=0),
    ]
    return results_dict("t.jsonl", 2.0, "ws://127.0.0.1:1/ws", [analyze_session("s<1>", sent, received)])


def test_results_are_json_and_the_summary_prints() -> None:
    results = _results()
    back = json.loads(json.dumps(results))
    assert back["summary"]["sentences"] == 2 and back["summary"]["stalled_sentences"] == 1
    text = render_summary(results)
    assert "ttfa (last fragment -> audio)" in text and "bark 1" in text


def test_timeline_is_self_contained_svg_with_escaped_text() -> None:
    page = render_html(_results())
    assert page.startswith("<!doctype html>") and "<svg" in page and "</svg>" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no external assets
    assert "<script" not in page
    assert "One &lt;two&gt; &amp; three." in page and "s&lt;1&gt;" in page
    assert page.count('fill="#4e79a7"') >= 2  # the bark sentence bar (and its legend swatch)
    assert 'stroke="#000"' in page  # the cached sentence is outlined
    assert "stall in seq 1" in page and "gap before seq 0" in page


# --- the gateway's recorder -------------------------------------------------------------------------------


def test_recorder_writes_a_trace_replay_reads(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "rec", "gw-test")
    rec.record_message("s1", 100.0, Start(voice="maya"))  # not text: ignored
    rec.record_message("s1", 100.0, Text("Hel"))
    rec.record_message("s2", 100.5, Speak("Hi there."))
    rec.record_message("s1", 101.25, Text("lo."))
    rec.record_message("s1", 101.5, Flush())
    rec.close()
    rec.record("s1", 102.0, text="after close")  # dropped, not an error
    files = list((tmp_path / "rec").glob("trace-*-gw-test.jsonl"))
    assert files == [rec.path]
    trace = load_trace(rec.path)
    assert trace.meta["gateway_id"] == "gw-test"
    assert [(e.t, e.text) for e in trace.sessions["s1"]] == [(0.0, "Hel"), (1.25, "lo."), (1.5, None)]
    assert [(e.t, e.text) for e in trace.sessions["s2"]] == [(0.5, "Hi there."), (0.5, None)]
    assert rec.events == 5 and rec.dropped == 1


def test_recorder_stops_at_its_size_bound(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "gw", max_bytes=600)
    for i in range(50):
        rec.record("s", float(i), text=f"fragment number {i} ")
    rec.close()
    size = rec.path.stat().st_size
    assert size <= 600 and rec.dropped > 0 and rec.events < 50
    assert isinstance(load_trace(rec.path), Trace)  # what was written is still a valid trace


def test_two_recorders_never_share_a_file(tmp_path: Path) -> None:
    first, second = Recorder(tmp_path, "gw"), Recorder(tmp_path, "gw")
    assert first.path != second.path
    first.record("a", 0.0, text="one", flush=True)
    second.record("b", 0.0, text="two", flush=True)
    first.close()
    second.close()
    assert list(load_trace(first.path).sessions) == ["a"] and list(load_trace(second.path).sessions) == ["b"]


def test_recorder_from_config_is_off_without_a_directory(tmp_path: Path) -> None:
    assert Recorder.from_config(None, "gw") is None
    rec = Recorder.from_config(str(tmp_path / "on"), "gw")
    assert rec is not None and rec.active
    rec.close()
    assert not rec.active
