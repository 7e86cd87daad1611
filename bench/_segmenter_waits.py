"""bench/segmenter.py's timing half: how long the segmenter holds text back on the traces'
timing (no synthesis), and time to first audio with traces replayed into a local stack, with the
rows of their tables."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from bench import _rules_segmenter
from bench._stack import REPO, Stack
from clients.replay import replay
from clients.replay_analysis import SessionResult, TextClock, summarize
from clients.stats import Summary
from clients.trace import load_trace
from stream_server.core import segmenter as sesame


class Streaming(Protocol):
    def feed(self, fragment: str) -> list[str]: ...
    def flush(self) -> list[str]: ...


def text_waits(make: Callable[[], Streaming]) -> dict[str, object]:
    """The segmenter alone on the traces' timing: when each turn's first chunk is cut (from the
    turn's first fragment), how long it is, and how long each sentence is held back after its last
    character arrived (waiting for the next word or flush). No synthesis, no network."""
    firsts: list[float] = []
    chars: list[int] = []
    held: list[float] = []
    for path in sorted((REPO / "clients" / "traces").glob("*.jsonl")):
        for events in load_trace(path).sessions.values():
            seg, clock = make(), TextClock()
            start: float | None = None  # the current turn's first fragment, until its first cut
            spoke = False
            for ev in events:
                if ev.text is not None:
                    clock.feed(ev.t, ev.text)
                    if start is None and not spoke:
                        start = ev.t
                out = seg.feed(ev.text) if ev.text is not None else seg.flush()
                for sentence in out:
                    done = clock.locate(sentence)
                    held.append(ev.t - done if done is not None else 0.0)
                if out and start is not None:
                    firsts.append(ev.t - start)
                    chars.append(len(out[0]))
                    start, spoke = None, True
                if ev.text is None:
                    start, spoke = None, False
    return {
        "turns": len(firsts),
        "first_ms": Summary.of(firsts).to_dict(1000.0),
        "first_chars_p50": sorted(chars)[len(chars) // 2] if chars else 0,
        "held_ms": Summary.of(held).to_dict(1000.0),
        "sentences": len(held),
    }


def turn_waits(sessions: list[SessionResult]) -> list[float]:
    """Per turn: from its first fragment sent to its first audio frame."""
    out: list[float] = []
    for r in sessions:
        starts: list[float] = []
        flushes = sorted(r.flushes)
        for t, _ in sorted(r.fragments):
            if len(starts) <= sum(f < t for f in flushes):
                starts.append(t)
        for turn, start in enumerate(starts):
            firsts = [s.first_audio_t for s in r.sentences if s.turn == turn and s.first_audio_t is not None]
            if firsts:
                out.append(min(firsts) - start)
    return out


def ttfa(values: list[int], pattern: str) -> list[dict[str, object]]:
    traces = sorted((REPO / "clients" / "traces").glob(pattern))
    rows: list[dict[str, object]] = []
    for first in values:
        env = {
            "SESAME_TIERS": "workers",
            "SESAME_CACHE_ENABLED": "false",
            # generous deadlines: this measures the segmenter, not failover on a busy machine
            "SESAME_ACK_TIMEOUT": "20000",
            "SESAME_STALL_TIMEOUT": "20000",
            "SESAME_TIMEOUT": "30000",
            "SESAME_MISSED_HEARTBEATS": "60",
        }
        with Stack({**env, "SESAME_FIRST_CHUNK_MIN_CHARS": str(first)}) as stack:
            stack.start_worker("espeak-1", "espeak-ng")
            sessions = [
                s
                for path in traces
                for s in asyncio.run(replay(load_trace(path), stack.ws_url, timeout_s=60.0))
            ]
        summary = summarize(sessions)
        waits = Summary.of(turn_waits(sessions)).to_dict(1000.0)
        rows.append({"first_chunk_min_chars": first, "turn_wait_ms": waits, **summary})
    return rows


def held_back() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, cls, values in (
        ("sesame (pysbd windows)", sesame.SentenceSegmenter, (0, 20, 40)),
        ("rules (before)", _rules_segmenter.SentenceSegmenter, (0, 20)),
    ):
        for n in values:

            def make(cls: Callable[[int, int], Streaming] = cls, n: int = n) -> Streaming:
                return cls(200, n)

            rows.append({"segmenter": name, "first_chunk_min_chars": n, **text_waits(make)})
    return rows


def held_row(r: dict[str, object]) -> list[object]:
    first, held = r["first_ms"], r["held_ms"]
    assert isinstance(first, dict) and isinstance(held, dict)
    return [
        r["segmenter"], r["first_chunk_min_chars"], r["turns"], first["p50"], first["p95"],
        r["first_chars_p50"], held["p50"], held["p95"], r["sentences"],
    ]  # fmt: skip


def ttfa_row(r: dict[str, object]) -> list[object]:
    wait, t, gap = r["turn_wait_ms"], r["ttfa_ms"], r["gap_ms"]
    assert isinstance(wait, dict) and isinstance(t, dict) and isinstance(gap, dict)
    return [
        r["first_chunk_min_chars"], wait["count"], wait["p50"], wait["p95"], t["p50"], t["p95"], gap["p95"],
        r["stalled_sentences"], r["sentences"],
    ]  # fmt: skip
