"""The playback-deadline cut (issue 24): a turn's text streamed word by word is cut before its
sentence is complete only when the listener would otherwise run dry (core/playback.py), at the best
boundary reached (core/segmenter.py). Pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.ws_protocol import Flush, Speak, Text
from stream_server.core.lookahead import unpaced
from stream_server.core.playback import DEADLINE_LEAD_S, PlaybackClock, deadline_lead_s
from stream_server.core.segmenter import SentenceSegmenter
from stream_server.core.session import SessionCore
from stream_server.core.session_outs import Dispatch, Out
from tests.stream_server.test_segmenter import FAST, max_lengths, split_text


@pytest.mark.parametrize(
    ("why", "heard_until", "ahead_s", "now", "expected"),
    [
        ("not playing (nothing sent yet): nothing to run dry", 0.0, 2.0, 5.0, False),
        ("played out a while ago: not playing", 3.0, 0.0, 5.0, False),
        ("buffered for less than the lead", 5.0 + DEADLINE_LEAD_S / 2, 0.0, 5.0, True),
        ("buffered for exactly the lead", 5.0 + DEADLINE_LEAD_S, 0.0, 5.0, True),
        ("buffered for longer than the lead", 5.0 + 2 * DEADLINE_LEAD_S, 0.0, 5.0, False),
        ("little buffered, but audio still coming before it", 5.1, 2.0, 5.0, False),
    ],
)
def test_runs_dry(why: str, heard_until: float, ahead_s: float, now: float, expected: bool) -> None:
    assert PlaybackClock(heard_until=heard_until).runs_dry(ahead_s, now) is expected, why


@pytest.mark.parametrize(
    ("why", "pending", "cut", "rest"),
    [
        ("a sentence end whose next word may still grow", "Good morning. Could", "Good morning.", "Could"),
        ("a stop at the text's end", "Would you like anything else?", "Would you like anything else?", ""),
        ("a stop after a closing quote", 'He said "stop."', 'He said "stop."', ""),
        ("the last clause mark", "Could you say it, once more, a", "Could you say it, once more,", "a"),
        ("a dash is a clause mark", "It was late \u2014 very late", "It was late \u2014", "very late"),
        ("no mark: the last complete word", "Could you say it", "Could you say", "it"),
        ("too few words: not yet", "Could you say", None, "Could you say"),
        ("an abbreviation is no sentence end (a word cut instead)", "Mr. Smith went home", "Mr. Smith went",
         "home"),
        ("an abbreviation with too few words: not yet", "Mr. Smith", None, "Mr. Smith"),
        ("a number may go on (3.5): a word cut instead", "It costs three or 3.", "It costs three or", "3."),
    ],
)  # fmt: skip
def test_the_deadline_cut_takes_the_best_boundary_reached(
    why: str, pending: str, cut: str | None, rest: str
) -> None:
    seg = SentenceSegmenter(first_chunk_min_chars=20)
    assert seg.feed("Hi. ") == []  # then past the turn's first chunk
    assert seg.feed(pending) == ["Hi."], why
    assert seg.cut_for_deadline() == ([] if cut is None else [cut]), why
    assert seg.pending == rest, why


def test_the_first_chunk_of_a_turn_is_never_cut_for_the_deadline() -> None:
    seg = SentenceSegmenter(first_chunk_min_chars=20)
    assert seg.feed("Could you say it once") == []
    assert seg.cut_for_deadline() == []
    assert seg.pending == "Could you say it once"


@FAST
@given(split_text(), max_lengths, st.lists(st.booleans(), max_size=40))
def test_deadline_cuts_anywhere_keep_the_text(
    case: tuple[str, list[str]], max_length: int, cuts: list[bool]
) -> None:
    """Cuts asked after any fragments: every word comes out once, in order, no sentence too long
    or without a letter or digit."""
    text, parts = case
    seg = SentenceSegmenter(max_length, 5)
    out: list[str] = []
    for i, part in enumerate(parts):
        out += seg.feed(part)
        if i < len(cuts) and cuts[i]:
            out += seg.cut_for_deadline()
    out += seg.flush()
    assert all(s and len(s) <= max_length and any(c.isalnum() for c in s) for s in out)
    assert [c for c in "".join(out) if c.isalnum()] == [c for c in text if c.isalnum()]


# ---- the session: when the cut fires ---------------------------------------------------------

WORD_S = 0.15  # a word every 150 ms, as the capacity bench's web page streams
PARAGRAPH = "Good morning. Could you say it once more, a little more slowly?"


def dispatched(outs: list[Out]) -> list[str]:
    return [o.sentence.text for o in outs if isinstance(o, Dispatch)]


def stream_words(first_audio_s: float, *, lookahead_s: float = 8.0) -> list[tuple[float, str]]:
    """Stream PARAGRAPH a word every WORD_S; the first sentence's audio (``first_audio_s`` long)
    goes to the listener 0.15 s after it is dispatched. (when, text) of every dispatch."""
    c = SessionCore("s", voice="maya", sample_rate=24_000, lookahead=3, lookahead_s=lookahead_s)
    got: list[tuple[float, str]] = []
    for i, word in enumerate(PARAGRAPH.split(" ")):
        now = i * WORD_S
        if got and len(got) == 1 and now >= got[0][0] + 0.15 and not c.playback.heard_until:
            c.audio(0, "piper", b"\x00\x00" * round(24_000 * first_audio_s))
            c.playback.sent(first_audio_s, now)
            c.sentence_done(0)
        got += [(now, t) for t in dispatched(c.receive(Text(word if i == 0 else " " + word), now))]
    got += [(99.0, t) for t in dispatched(c.receive(Flush(), 99.0))]
    return got


def test_a_short_sentence_before_a_long_one_has_the_long_one_cut_before_the_listener_runs_dry() -> None:
    """The first sentence plays 0.7 s, until 1.3; the next one's words would need 1.5 s more to
    arrive. At 0.9, with 0.4 s left to play (under the lead for its 21 characters so far, 0.575 s),
    its words so far go (the last may still grow)."""
    assert deadline_lead_s("Could you say it once") == pytest.approx(0.575)
    got = stream_words(0.7)
    assert [t for _, t in got][:2] == ["Good morning.", "Could you say it"]
    assert got[1][0] == pytest.approx(0.9)
    assert " ".join(t for _, t in got) == PARAGRAPH


def test_text_faster_than_speech_is_not_cut() -> None:
    """With enough audio ahead (a 4 s first sentence) the next sentence completes in time: whole."""
    got = stream_words(4.0)
    assert [t for _, t in got] == ["Good morning.", "Could you say it once more, a little more slowly?"]


def test_a_whole_text_at_once_and_an_http_response_are_never_cut_for_the_deadline() -> None:
    c = SessionCore("s", voice="maya", lookahead=8)
    assert dispatched(c.receive(Speak("Hi. " + PARAGRAPH), 0.0)) == ["Hi."]  # first audio first
    assert dispatched(c.audio(0, "piper", b"\x00\x00" * 2400))[-1] == PARAGRAPH.split(". ")[1]
    h = SessionCore("h", voice="maya", lookahead=8)
    h.lookahead = unpaced(h.lookahead)
    for core in (paced(), h):
        core.receive(Text("Hi. Could you say it once"), 0.0)
        core.audio(0, "piper", b"\x00\x00" * 2400)  # 0.1 s, heard until 0.1
        core.playback.sent(0.1, 0.0)
        paced_cut = ["Could you say it once"] if core is not h else []
        assert dispatched(core.receive(Text(" more"), 0.0)) == paced_cut


def paced() -> SessionCore:
    return SessionCore("p", voice="maya", lookahead=8)


def test_a_listener_not_playing_yet_is_not_cut_for() -> None:
    """No audio sent yet (the first chunk is on its way; or no voice answers, every sentence an
    error with its text): text keeps its sentences however long."""
    c = paced()
    assert dispatched(c.receive(Text("Hi. Could you say it once"), 0.0)) == ["Hi."]
    assert dispatched(c.receive(Text(" more"), 1.0)) == []
    c.sentence_failed(0, "speech_unavailable", "no voice")
    assert dispatched(c.receive(Text(" please"), 2.0)) == []
    assert c.pending_chars() == len("Could you say it once more please")
