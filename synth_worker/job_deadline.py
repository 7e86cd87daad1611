"""Whether this worker can still meet a job's playback need: the rule behind ``overloaded``. Pure.

A job is refused as ``overloaded`` only when its first audio would come later than its listener
needs it (``need_in_s`` after it arrived; a need already past is now) by more than ``LATE_S``,
estimated from the worker's measured pace (``rtf``: seconds of compute per second of audio) and the
work that starts before it in the start order (broker/deadline_order.py): what the jobs running
still have to do, the queued jobs ahead of it, then its own audio (the whole sentence: a
conservative first audio). A long queue whose needs are far is no reason to refuse: jobs needed
later wait behind it, and it does not wait behind them. A worker that has not measured its pace
yet, or can start the job at once, takes it. The gateway then places a refused job on another
worker, or on the closest tier that can speak it in time (core/scheduler.py).

``SESAME_MAX_QUEUE`` remains as a bound on memory (jobs held), not as the rule: when it is reached,
the job that would start last (queued or new) is refused (synth_worker/core.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CHARS_PER_SECOND = 14.0  # speech rate for a job's expected audio (as the gateway estimates)
# How late a first audio may be estimated before the job is refused: the estimate's own error (a
# pace measured over other sentences, text length as a proxy for audio) and a wait a listener
# already waiting (a first sentence) still takes from the primary voice rather than another.
# The default of SESAME_MAX_LATE_MS.
LATE_S = 3.0


def expected_audio_s(text: str) -> float:
    return len(text) / CHARS_PER_SECOND


@dataclass(frozen=True, slots=True)
class Running:
    started_at: float
    text: str


def late_by_s(  # noqa: PLR0917
    need_at: float,
    text: str,
    running: Iterable[Running],
    ahead: Iterable[str],
    rtf: float,
    now: float,
    batch: int = 1,
) -> float:
    """How much later than ``need_at`` the job's first audio is expected (<= 0: in time). ``running``:
    the jobs synthesizing now; ``ahead``: the texts of the queued jobs that start before it;
    ``batch``: jobs a batch runs at once (the queue ahead is worked off that many at a time)."""
    if rtf <= 0:
        return float("-inf")  # no pace measured yet: nothing to judge by
    left = max((rtf * expected_audio_s(r.text) - (now - r.started_at) for r in running), default=0.0)
    queued = sum(rtf * expected_audio_s(t) for t in ahead) / max(1, batch)
    first_audio_at = now + max(0.0, left) + queued + rtf * expected_audio_s(text)
    return first_audio_at - max(need_at, now)


def refusal(late_s: float, max_late_s: float = LATE_S) -> str | None:
    """Why a job is refused as ``overloaded`` (None: it is taken); ``max_late_s``: SESAME_MAX_LATE_MS."""
    if late_s > max_late_s:
        return f"its first audio would be {late_s:.1f} s late for its listener"
    return None


# A job whose listener needs its first audio within this many seconds of its start is urgent (the
# engine may spend CPU for an earlier first audio: Piper streams its first clause even beside another
# speaker); a lookahead sentence is needed seconds later and is spoken at the lowest CPU cost.
URGENT_S = 0.5


def need_s(arrived_at: float, need_in_s: float | None, started_at: float) -> float:
    """Seconds from ``started_at`` until the job's listener needs its first audio (``need_in_s``
    after it arrived; None: not said, as now); 0 when that is past."""
    return max(0.0, arrived_at + (need_in_s or 0.0) - started_at)


def urgent(arrived_at: float, need_in_s: float | None, started_at: float) -> bool:
    """Whether a job started at ``started_at`` is needed now (``need_in_s`` after it arrived; None:
    not said, as now)."""
    return need_s(arrived_at, need_in_s, started_at) < URGENT_S
