"""Lookahead as a budget of seconds (core/lookahead.py), and the gateway's dispatch order when several
sessions' sentences are ready at once (core/dispatch_order.py). Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from broker.messages import Heartbeat
from broker.ws_protocol import Speak
from stream_server.core.actions import WORKERS, RunLocal, SendJob, Sentence
from stream_server.core.dispatch_order import DispatchOrder, in_need_order, needed_first
from stream_server.core.failover import FailoverConfig
from stream_server.core.lookahead import Lookahead, next_dispatch, unpaced
from stream_server.core.scheduler import Scheduler
from stream_server.core.session import SessionCore
from stream_server.core.session_outs import Dispatch, Out
from stream_server.hub.live_sessions import CloseReason, Sessions, SessionSettings

BUDGET = Lookahead(seconds=6.0, max_sentences=4)


@pytest.mark.parametrize(
    ("why", "in_flight", "coming_s", "heard_until", "now", "expected"),
    [
        ("a first sentence goes now, however long", 0, 0.0, 0.0, 10.0, 10.0),
        ("nothing coming, a little buffered: now (earlier than now)", 0, 0.0, 11.0, 10.0, 5.0),
        ("one coming under the budget: now", 1, 2.0, 10.0, 10.0, 6.0),
        ("buffered plus coming over the budget: when it has played down", 1, 2.0, 20.0, 10.0, 16.0),
        ("the coming audio alone fills the budget: on an event", 2, 6.0, 10.0, 10.0, None),
        ("the count is full: on an event", 4, 1.0, 10.0, 10.0, None),
        ("plenty buffered, nothing coming: later", 0, 0.0, 40.0, 10.0, 34.0),
    ],
)
def test_next_dispatch(  # noqa: PLR0917
    why: str, in_flight: int, coming_s: float, heard_until: float, now: float, expected: float | None
) -> None:
    assert next_dispatch(BUDGET, in_flight, coming_s, heard_until, now) == expected, why


@pytest.mark.parametrize(
    ("why", "heard_until", "silent_since", "expected"),
    [
        ("the listener waits on a silent sentence: its first audio, or 0.3 s after it went", 10.0, 9.9, 10.2),
        ("0.3 s passed: now", 10.0, 9.0, 9.3),
        ("audio buffered: the silent one holds nothing up", 12.0, 9.9, 8.0),
        ("every one in synthesis has spoken: the budget alone", 10.0, None, 6.0),
    ],
)
def test_first_audio_first(why: str, heard_until: float, silent_since: float | None, expected: float) -> None:
    assert next_dispatch(BUDGET, 1, 2.0, heard_until, 10.0, silent_since) == pytest.approx(expected), why


def test_a_turns_second_sentence_goes_at_the_first_ones_first_audio_or_its_bound() -> None:
    """The first-chunk rule makes most turns two sentences at once: the second's job no longer
    takes the CPU and the worker's intake from the first's first audio (issue 20)."""
    c = SessionCore("s", voice="maya", lookahead=8, lookahead_s=5.0)
    assert dispatched(c.receive(speak([1, 1]), 100.0)) == [0]
    assert c.dispatch_at == pytest.approx(100.3)
    assert dispatched(c.audio(0, "piper", PCM_1S[:4800])) == [1]
    silent = SessionCore("t", voice="maya", lookahead=8, lookahead_s=5.0)
    assert dispatched(silent.receive(speak([1, 1]), 100.0)) == [0]
    assert dispatched(silent.wake(100.2)) == []
    assert dispatched(silent.wake(100.3)) == [1]  # a slow or dead voice holds the next one no longer


def test_a_session_without_a_real_time_listener_is_bounded_by_the_count_only() -> None:
    """POST /tts and the OpenAI route: an HTTP response is fetched as fast as audio comes."""
    assert next_dispatch(unpaced(BUDGET), 3, 60.0, 100.0, 10.0) == float("-inf")
    assert next_dispatch(unpaced(BUDGET), 4, 60.0, 100.0, 10.0) is None


def dispatched(outs: list[Out]) -> list[int]:
    return [o.sentence.seq for o in outs if isinstance(o, Dispatch)]


PCM_1S = b"\x00\x00" * 24_000


def speak(seconds: list[int]) -> Speak:
    """Sentences of these expected lengths (core/playback.py: 14 characters a second)."""
    return Speak(" ".join(f"{'x' * (14 * n - 1)}." for n in seconds))


def test_a_session_dispatches_while_its_audio_ahead_is_under_the_budget() -> None:
    c = SessionCore("s", voice="maya", lookahead=8, lookahead_s=5.0)
    # 2 s go now; the rest wait for its first audio (first audio first). Its 2 s arrive at 100: then
    # 2 s (2 s coming) and 2 s (4 s coming); the fourth would make 6 s.
    assert dispatched(c.receive(speak([2, 2, 2, 2, 2]), 100.0)) == [0]
    assert dispatched(c.audio(0, "piper", PCM_1S * 2)) == [1, 2]
    # 2 s buffered and 4 s still coming, so the fourth may go once 1 s has played, at 101.
    c.playback.sent(2.0, 100.0)  # as the interpreter does once it has sent the frame
    assert dispatched(c.sentence_done(0)) == []
    assert c.dispatch_at == pytest.approx(101.0)
    assert dispatched(c.wake(100.5)) == []
    assert dispatched(c.wake(101.0)) == [3]
    assert c.dispatch_at is None  # 6 s ahead again: the fifth waits on an event


def test_a_first_sentence_is_dispatched_at_once_whatever_the_budget() -> None:
    c = SessionCore("s", voice="maya", lookahead=3, lookahead_s=0.5)
    assert dispatched(c.receive(speak([9, 1]), 0.0)) == [0]


def test_a_session_with_plenty_buffered_does_not_dispatch_its_next_turn_yet() -> None:
    c = SessionCore("s", voice="maya", lookahead=3, lookahead_s=4.0)
    assert dispatched(c.receive(speak([1]), 0.0)) == [0]
    c.audio(0, "piper", PCM_1S * 10)  # 10 s of audio went out at 0
    c.playback.sent(10.0, 0.0)
    c.sentence_done(0)
    # A new turn at 1 s: 9 s are still buffered, so its sentence waits until 4 s remain, at 6.
    c.dispatch_moved = False
    assert dispatched(c.receive(speak([1]), 1.0)) == []
    assert c.dispatch_at == pytest.approx(6.0)
    assert c.dispatch_moved  # the interpreter wakes the hub's deadline task for it
    assert dispatched(c.wake(6.0)) == [1]


def test_a_cancel_forgets_the_lookahead_deadline() -> None:
    c = SessionCore("s", voice="maya", lookahead=3, lookahead_s=4.0)
    c.receive(speak([1]), 0.0)
    c.audio(0, "piper", PCM_1S * 10)
    c.playback.sent(10.0, 0.0)
    c.sentence_done(0)
    c.receive(speak([1]), 1.0)
    assert c.dispatch_at is not None
    c.cancel()
    assert c.dispatch_at is None


def of(actions: Sequence[object], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def s(session: str, seq: int, need_at: float, chars: int = 20) -> Sentence:
    return Sentence(session, 0, seq, "y" * chars, "maya", 24_000, need_at=need_at)


@pytest.mark.parametrize(
    ("why", "ready", "served", "expected"),
    [
        ("earliest need first, not arrival", [s("a", 0, 19.0), s("b", 0, 13.0)], {}, [1, 0]),
        ("needs already past are all now: round robin, never served first",
         [s("a", 0, 1.0), s("b", 0, 2.0)], {"a": 5}, [1, 0]),
        ("round robin: served longest ago first", [s("a", 0, 0.0), s("b", 0, 0.0)], {"a": 1, "b": 2}, [0, 1]),
        ("then the shorter text", [s("a", 0, 0.0, 80), s("b", 0, 0.0, 20)], {"a": 1, "b": 1}, [1, 0]),
        ("a session's own sentences keep their order", [s("a", 1, 0.0), s("a", 0, 20.0)], {}, [1, 0]),
    ],
)  # fmt: skip
def test_in_need_order(why: str, ready: list[Sentence], served: dict[str, int], expected: list[int]) -> None:
    assert in_need_order(ready, 10.0, served) == expected, why


def test_dispatch_order_takes_turns_across_sessions_from_one_batch_to_the_next() -> None:
    order = DispatchOrder()
    both = [s("a", 0, 0.0), s("b", 0, 0.0)]
    first = order.order(both, lambda x: x, 10.0)
    second = order.order([s("a", 1, 0.0), s("b", 1, 0.0)], lambda x: x, 10.0)
    assert [x.session_id for x in first] == ["a", "b"]
    assert [x.session_id for x in second] == ["a", "b"]  # a was served first, so it is served first again
    order.forget("a")  # a closed: a session never served comes first
    assert [x.session_id for x in order.order([s("b", 2, 0.0), s("a", 2, 0.0)], lambda x: x, 10.0)] == [
        "a",
        "b",
    ]


def test_sessions_due_at_the_same_wake_dispatch_the_listener_running_dry_first() -> None:
    sessions = Sessions(SessionSettings(8, 200, 0, 3, 4.0))
    links = [sessions.open("maya", 24_000, "pcm16", session_id=name).link for name in ("far", "near")]
    for link, buffered in zip(links, (12.0, 10.0), strict=True):
        link.core.receive(speak([1]), 0.0)
        link.core.audio(0, "piper", PCM_1S)
        link.core.playback.sent(buffered, 0.0)  # heard until 12 (far) and 10 (near)
        link.core.sentence_done(0)
        assert dispatched(link.core.receive(speak([1]), 0.5)) == []  # a next turn waits
    assert sessions.next_deadline() == pytest.approx(6.0)  # near: 4 s before it runs dry
    assert sessions.wake(5.0) == []
    woken = sessions.wake(8.0)  # both due; near's listener needs its sentence at 10, far's at 12
    assert [link.session_id for link, _ in woken] == ["near", "far"]
    assert [dispatched(outs) for _, outs in woken] == [[1], [1]]
    assert sessions.next_deadline() is None


@pytest.mark.parametrize(
    ("why", "batch", "expected"),
    [
        ("earliest need first", [s("a", 0, 19.0), s("b", 0, 13.0)], ["b0", "a0"]),
        ("needs past are now: every session's first before anyone's second",
         [s("a", 0, 1.0), s("a", 1, 2.0), s("b", 4, 3.0)], ["a0", "b4", "a1"]),
        ("then the shorter text", [s("a", 0, 0.0, 80), s("b", 0, 0.0, 20)], ["b0", "a0"]),
    ],
)  # fmt: skip
def test_needed_first(why: str, batch: list[Sentence], expected: list[str]) -> None:
    assert [f"{x.session_id}{x.seq}" for x in needed_first(batch, lambda x: x, 10.0)] == expected, why


def test_a_dead_workers_sentences_fail_over_in_deadline_order() -> None:
    """The capped tier's free places go to the listener who needs a sentence first, not to the
    sentence that came first."""
    sched = Scheduler(FailoverConfig(tiers=(WORKERS, "piper")))
    sched.heartbeat(Heartbeat("w1", 1, "ready", "piper", "m", 1, 0.0, 0.5), 0.0)
    for session, need_at in (("later", 30.0), ("soon", 12.0), ("now", 0.0)):
        assert of(sched.submit(s(session, 0, need_at), 10.0), SendJob)
    actions = sched.heartbeat(Heartbeat("w1", 1, "unavailable", "piper", "m", 2, 0.0, 0.5, reason="x"), 10.5)
    assert [a.sentence.session_id for a in actions if isinstance(a, RunLocal)] == ["now", "soon", "later"]


def test_a_cancelled_or_closed_sessions_dispatch_time_wakes_nobody() -> None:
    sessions = Sessions(SessionSettings(8, 200, 0, 3, 4.0))
    links = [sessions.open("maya", 24_000, "pcm16", session_id=name).link for name in ("a", "b", "c")]
    for link, buffered in zip(links, (12.0, 10.0, 14.0), strict=True):
        link.core.receive(speak([1]), 0.0)
        link.core.audio(0, "piper", PCM_1S)
        link.core.playback.sent(buffered, 0.0)
        link.core.sentence_done(0)
        link.core.receive(speak([1]), 0.5)  # waits until 4 s before its listener runs dry
    assert sessions.next_deadline() == pytest.approx(6.0)  # b
    links[1].core.cancel()  # barge-in: b has nothing waiting any more
    assert sessions.next_deadline() == pytest.approx(8.0)  # a
    sessions.close(links[0], CloseReason.CLOSED)
    assert sessions.next_deadline() == pytest.approx(10.0)  # c
    assert [link.session_id for link, _ in sessions.wake(20.0)] == ["c"]
    assert sessions.next_deadline() is None and sessions.wake(30.0) == []
