"""Replay traces: JSONL of timed text fragments per session (what ``sesame-voice replay`` plays back
and what the gateway writes with ``SESAME_RECORD_DIR``).

One JSON object per line:

    {"session": "s1", "t": 0.123, "text": "Hel"}      a text fragment sent at t seconds
    {"session": "s1", "t": 0.980, "flush": true}      end of turn
    {"meta": {...}}                                    optional, anywhere: who made the trace, how

``t`` counts seconds from the start of the trace (all sessions share the clock), so sessions may
start at different times and overlap. Lines may interleave sessions and need not be sorted; each
session's events are ordered by ``t`` (ties keep file order). Anything else is an error naming the
line: an unknown key, a missing or negative ``t``, a line with both or neither of text/flush.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

EVENT_KEYS = frozenset({"session", "t", "text", "flush"})


class TraceError(ValueError):
    """A trace line that does not follow the format; the message names the line."""


@dataclass(frozen=True, slots=True)
class TraceEvent:
    t: float
    text: str | None = None  # None: a flush
    line: int = 0

    @property
    def flush(self) -> bool:
        return self.text is None


@dataclass(frozen=True, slots=True)
class Trace:
    sessions: dict[str, tuple[TraceEvent, ...]]
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max((evs[-1].t for evs in self.sessions.values() if evs), default=0.0)

    @property
    def events(self) -> int:
        return sum(len(evs) for evs in self.sessions.values())

    def text_of(self, session: str) -> str:
        return "".join(e.text for e in self.sessions[session] if e.text is not None)

    def max_concurrency(self) -> int:
        """The most sessions active (between their first and last event) at one time."""
        edges = []
        for evs in self.sessions.values():
            if evs:
                edges.append((evs[0].t, 1))
                edges.append((evs[-1].t, -1))
        live = best = 0
        for _, step in sorted(edges, key=lambda e: (e[0], -e[1])):
            live += step
            best = max(best, live)
        return best


def parse_trace(lines: Iterable[str]) -> Trace:
    sessions: dict[str, list[TraceEvent]] = {}
    meta: dict[str, object] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise TraceError(f"line {number}: not JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise TraceError(f"line {number}: not a JSON object")
        if "meta" in obj:
            if set(obj) != {"meta"} or not isinstance(obj["meta"], dict):
                raise TraceError(f"line {number}: a meta line holds only an object under 'meta'")
            meta.update(obj["meta"])
            continue
        unknown = set(obj) - EVENT_KEYS
        if unknown:
            raise TraceError(f"line {number}: unknown key(s) {', '.join(sorted(unknown))}")
        session, t = obj.get("session"), obj.get("t")
        if not isinstance(session, str) or not session:
            raise TraceError(f"line {number}: 'session' must be a non-empty string")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise TraceError(f"line {number}: 't' must be a number of seconds >= 0")
        has_text, flush = "text" in obj, obj.get("flush")
        if "flush" in obj and flush is not True:
            raise TraceError(f"line {number}: 'flush' must be true when present")
        if has_text == (flush is True):
            raise TraceError(f"line {number}: a line has either 'text' or 'flush': true")
        if has_text:
            text = obj["text"]
            if not isinstance(text, str) or not text:
                raise TraceError(f"line {number}: 'text' must be a non-empty string")
            event = TraceEvent(float(t), text, number)
        else:
            event = TraceEvent(float(t), None, number)
        sessions.setdefault(session, []).append(event)
    if not sessions:
        raise TraceError("the trace has no events")
    ordered = {sid: tuple(sorted(evs, key=lambda e: (e.t, e.line))) for sid, evs in sessions.items()}
    return Trace(ordered, meta)


def load_trace(path: Path) -> Trace:
    with path.open(encoding="utf-8") as f:
        return parse_trace(f)


def dump_events(session: str, events: Iterable[TraceEvent]) -> list[str]:
    """JSONL lines for one session's events (the inverse of ``parse_trace``)."""
    out = []
    for e in events:
        line: dict[str, object] = {"session": session, "t": round(e.t, 4)}
        if e.text is None:
            line["flush"] = True
        else:
            line["text"] = e.text
        out.append(json.dumps(line, ensure_ascii=False))
    return out
