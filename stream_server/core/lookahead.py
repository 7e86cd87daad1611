"""How far ahead of its listener a session has sentences synthesized: a budget of seconds. Pure.

A session dispatches its next sentence while the audio ahead of its listener is under
``SESAME_LOOKAHEAD_S`` seconds. The audio ahead is what has been sent and not yet played (the
playback clock, core/playback.py) plus what the sentences in synthesis are still expected to bring
(their text's expected audio, less what of it has been sent). So a session with plenty buffered does
not dispatch more, and its sentences do not take a worker's time from a listener about to run dry;
a session with nothing buffered and nothing in synthesis (a first sentence) always dispatches now.
``SESAME_LOOKAHEAD`` stays as a bound on the count (sentences in synthesis at once, each holding
its audio until its turn to play), not the rule. A session with no real-time listener (``POST /tts``
and the OpenAI speech route: the audio goes to an HTTP response, fetched as fast as it comes) is
``unpaced``: only the count bounds it.

**First audio first.** While the listener has nothing buffered and waits on a sentence in synthesis
that has brought no audio yet, the next sentence waits for that audio (at most ``first_audio_wait_s``
after the silent one was dispatched). The first-chunk rule makes most turns two sentences at once:
the second's job, published with the first, took the CPU of a 2-core host and a worker's intake from
the first's synthesis, ~0.6 ms of every such turn's first audio (issue 20, bench/gateway_overhead.py).
A worker speaks one job (batch) at a time, so the second started no later for it; the wait bounds
what a pool of idle workers loses.

``next_dispatch`` says when the next sentence may go: at or before ``now`` it goes now; a later
time is a deadline (the session's ``dispatch_at``: the hub's deadline task wakes it then, when the
buffered audio has played down to the budget); None waits for an event (a sentence ending, audio
sent: the count is full, or the audio still to come alone fills the budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Lookahead:
    seconds: float = 8.0  # SESAME_LOOKAHEAD_S: audio ahead of the listener
    max_sentences: int = 3  # SESAME_LOOKAHEAD: sentences in synthesis at once, at most
    first_audio_wait_s: float = 0.3  # a silent sentence ahead holds the next one this long at most


def next_dispatch(  # noqa: PLR0917
    lookahead: Lookahead,
    in_flight: int,
    coming_s: float,
    heard_until: float,
    now: float,
    silent_since: float | None = None,
) -> float | None:
    """When the next sentence may be dispatched. ``in_flight``: sentences dispatched and not yet
    played out; ``coming_s``: audio they are still expected to bring; ``heard_until``: when what was
    sent has played; ``silent_since``: when the earliest of them that has brought no audio yet was
    dispatched (None: each has brought some)."""
    if in_flight == 0 and heard_until <= now:
        return now  # nothing buffered, nothing coming: a first sentence goes at once
    if in_flight >= lookahead.max_sentences or coming_s >= lookahead.seconds:
        return None
    # buffered(t) + coming < budget, where buffered(t) = heard_until - t: from t = that time on.
    at = heard_until + coming_s - lookahead.seconds
    if silent_since is not None and heard_until <= now:  # the listener waits on a silent sentence
        at = max(at, silent_since + lookahead.first_audio_wait_s)
    return at


def unpaced(lookahead: Lookahead) -> Lookahead:
    """No budget of seconds (no real-time listener to pace by): only the count bounds it."""
    return replace(lookahead, seconds=math.inf)
