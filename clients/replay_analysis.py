"""The replay's analysis, without I/O: what was sent and received -> per-sentence results, a summary,
and a comparison with an earlier run."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from clients.stats import Summary

# --- what was sent and received (times in seconds on the replay clock) --------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    t: float
    text: str | None  # None: flush


@dataclass(frozen=True, slots=True)
class Received:
    t: float
    type: str  # "audio" or the server message type
    msg: dict[str, object] | None = None
    seq: int | None = None
    duration_s: float = 0.0


class TextClock:
    """The text sent so far, whitespace-normalized like the segmenter's sentences, with the time each
    character was sent, to find when a sentence's text was complete."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._times: list[float] = []
        self._text = ""
        self._dirty = False
        self.cursor = 0

    def feed(self, t: float, fragment: str) -> None:
        for c in fragment:
            if c.isspace():
                if self._chars and self._chars[-1] != " ":
                    self._chars.append(" ")
                    self._times.append(t)
            else:
                self._chars.append(c)
                self._times.append(t)
        self._dirty = True

    def locate(self, sentence: str) -> float | None:
        """When the last character of ``sentence`` (the next occurrence after the previous one found)
        was sent; None when it is not in the text sent so far."""
        needle = " ".join(sentence.split())
        if not needle:
            return None
        if self._dirty:
            self._text, self._dirty = "".join(self._chars), False
        at = self._text.find(needle, self.cursor)
        if at < 0:
            return None
        end = at + len(needle) - 1
        self.cursor = end + 1
        return self._times[end]


@dataclass(slots=True)
class SentenceResult:
    seq: int
    turn: int
    text: str
    engine: str
    cached: bool
    start_t: float  # sentence_start arrived
    ready_t: float  # its text was complete (sent)
    matched: bool = True  # False: the sentence was not found in the sent text; ready_t is a bound
    first_audio_t: float | None = None
    end_t: float | None = None
    play_start: float | None = None
    play_end: float | None = None
    audio_s: float = 0.0
    ttfa_s: float | None = None
    gap_s: float = 0.0
    gap_from: float | None = None  # where the gap began on the listener's clock
    stalls: list[tuple[float, float]] = field(default_factory=list)
    restarts: int = 0
    fallbacks: list[str] = field(default_factory=list)

    @property
    def stall_s(self) -> float:
        return sum(b - a for a, b in self.stalls)


@dataclass(slots=True)
class SessionResult:
    session: str
    fragments: list[tuple[float, str]]
    flushes: list[float]
    sentences: list[SentenceResult]
    errors: list[dict[str, object]]
    turns: int
    failure: str | None = None  # the session could not run (connect failed, timed out, closed)


def _int(v: object, default: int = -1) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def analyze_session(
    session: str,
    sent: Sequence[Sent],
    received: Sequence[Received],
    prebuffer_s: float = 0.0,
    failure: str | None = None,
) -> SessionResult:
    """Per-sentence latencies of one session from what was sent and received (pure)."""
    clock = TextClock()
    pending = sorted(sent, key=lambda s: s.t)
    fed = 0
    sentences: dict[int, SentenceResult] = {}
    errors: list[dict[str, object]] = []
    turns = 0
    play_end = -math.inf
    started = False
    for r in sorted(received, key=lambda r: r.t):
        while fed < len(pending) and pending[fed].t <= r.t:
            if pending[fed].text is not None:
                clock.feed(pending[fed].t, pending[fed].text or "")
            fed += 1
        msg = r.msg or {}
        if r.type == "sentence_start":
            seq = _int(msg.get("seq"))
            existing = sentences.get(seq)
            if existing is not None:  # restart: the same sentence from another engine
                existing.restarts += 1
                existing.engine = str(msg.get("engine"))
                continue
            text = str(msg.get("text", ""))
            ready = clock.locate(text)
            last_sent = max((s.t for s in pending[:fed] if s.text is not None), default=r.t)
            sentences[seq] = SentenceResult(
                seq=seq,
                turn=_int(msg.get("turn"), 0),
                text=text,
                engine=str(msg.get("engine")),
                cached=bool(msg.get("cached")),
                start_t=r.t,
                ready_t=ready if ready is not None else last_sent,
                matched=ready is not None,
            )
        elif r.type == "audio" and r.seq in sentences:
            s = sentences[r.seq]
            if s.first_audio_t is None:
                s.first_audio_t = r.t
                s.ttfa_s = r.t - s.ready_t
                audible_from = max(play_end, s.ready_t)
                start = max(r.t, play_end) + (prebuffer_s if not started else 0.0)
                started = True
                s.gap_s = max(0.0, start - audible_from)
                s.gap_from = audible_from if s.gap_s > 0 else None
                s.play_start = start
            elif r.t > play_end:
                s.stalls.append((play_end, r.t))
                start = r.t
            else:
                start = play_end
            play_end = start + r.duration_s
            s.play_end = play_end
            s.audio_s += r.duration_s
        elif r.type == "sentence_end":
            seq = _int(msg.get("seq"))
            if seq in sentences:
                sentences[seq].end_t = r.t
        elif r.type == "fallback":
            seq = _int(msg.get("seq"))
            if seq in sentences:
                sentences[seq].fallbacks.append(f"{msg.get('from')}->{msg.get('to')}")
        elif r.type == "error":
            errors.append(
                {"t": round(r.t, 4), "code": msg.get("code"), "seq": msg.get("seq"), "text": msg.get("text")}
            )
        elif r.type == "turn_end":
            turns += 1
    fragments = [(s.t, s.text) for s in pending if s.text is not None]
    flushes = [s.t for s in pending if s.text is None]
    return SessionResult(
        session, fragments, flushes, sorted(sentences.values(), key=lambda s: s.seq), errors, turns, failure
    )


# --- summary and comparison -------------------------------------------------------------------------


def summarize(sessions: Sequence[SessionResult]) -> dict[str, object]:
    spoken = [s for r in sessions for s in r.sentences if s.ttfa_s is not None]
    all_sentences = [s for r in sessions for s in r.sentences]
    errors = Counter(str(e.get("code")) for r in sessions for e in r.errors)
    errors.update(f"session_{r.failure}" for r in sessions if r.failure)
    return {
        "sessions": len(sessions),
        "sentences": len(all_sentences),
        "spoken": len(spoken),
        "ttfa_ms": Summary.of(s.ttfa_s for s in spoken if s.ttfa_s is not None).to_dict(1000.0),
        "gap_ms": Summary.of(s.gap_s for s in spoken).to_dict(1000.0),
        "stalled_sentences": sum(1 for s in spoken if s.stalls),
        "stall_ms": round(sum(s.stall_s for s in spoken) * 1000, 1),
        "engines": dict(Counter(s.engine for s in all_sentences).most_common()),
        "cached": sum(1 for s in all_sentences if s.cached),
        "fallbacks": dict(Counter(f for s in all_sentences for f in s.fallbacks).most_common()),
        "restarts": sum(s.restarts for s in all_sentences),
        "errors": dict(errors.most_common()),
        "unmatched": sum(1 for s in all_sentences if not s.matched),
        "audio_s": round(sum(s.audio_s for s in all_sentences), 3),
    }


@dataclass(frozen=True, slots=True)
class Finding:
    metric: str
    old: float | None
    new: float | None
    regression: bool

    @property
    def change(self) -> str:
        if self.old is None or self.new is None:
            return "-"
        if self.old == 0:
            return "+inf" if self.new > 0 else "0%"
        return f"{100 * (self.new - self.old) / self.old:+.1f}%"


def compare(
    old: dict[str, object], new: dict[str, object], threshold: float = 0.2, min_delta_ms: float = 5.0
) -> list[Finding]:
    """Compare two results' summaries; a latency metric regresses when it rose by more than
    ``threshold`` (relative) and more than ``min_delta_ms``; a count regresses when it rose at all."""
    out: list[Finding] = []
    for metric, key in (("ttfa_ms", "p50"), ("ttfa_ms", "p95"), ("gap_ms", "p95")):
        o, n = _get(old, metric, key), _get(new, metric, key)
        bad = o is not None and n is not None and n > o * (1 + threshold) and n - o > min_delta_ms
        out.append(Finding(f"{metric.removesuffix('_ms')} {key} (ms)", o, n, bad))
    for metric in ("errors", "stalled_sentences"):
        o, n = _count(old.get(metric)), _count(new.get(metric))
        out.append(Finding(metric, o, n, n > o))
    return out


def _get(summary: dict[str, object], metric: str, key: str) -> float | None:
    block = summary.get(metric)
    if not isinstance(block, dict):
        return None
    v = block.get(key)
    return float(v) if isinstance(v, int | float) else None


def _count(v: object) -> float:
    if isinstance(v, dict):
        return float(sum(x for x in v.values() if isinstance(x, int | float)))
    return float(v) if isinstance(v, int | float) else 0.0
