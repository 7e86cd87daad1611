"""``sesame-voice replay TRACE``: play a trace of streamed text into a gateway and measure each sentence.

Every session of the trace (clients/trace.py) gets its own websocket; its fragments are sent at
their recorded times (divided by ``--speed``), all sessions at once on one clock. Per sentence
(as the gateway cut it, from ``sentence_start``):

* **TTFA**: from the moment the fragment holding the sentence's last character was sent to the
  sentence's first audio frame (so the time the segmenter waits for the next characters counts);
* **gap**: the silence the listener hears before the sentence while its text was already there:
  first audio minus the later of (the previous audio finishing, the text being complete). For the
  first sentence of a turn this equals its TTFA; later sentences should have none;
* **stall**: silence inside the sentence (a frame arriving after the audio before it finished);
* the **engine** that spoke it (after any ``fallback``), whether it was cached, restarts.

The playout is simulated: a listener plays each frame as soon as it arrives and the audio before it
has finished (``--prebuffer-ms`` delays the first frame of a session).

Writes ``results.json`` and ``timeline.html`` (self-contained, inline SVG) into ``--out`` and prints
a summary. ``--compare OLD.json`` compares against an earlier results file: TTFA p50 or p95, or gap
p95, up by more than ``--threshold`` (20%) and more than ``--min-delta-ms``, or more errors or
stalled sentences, is a regression: printed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from broker.errors import ProtocolError

from . import protocol
from .loadtest import ws_url
from .stats import Summary, table
from .timeline import render_html
from .trace import Trace, TraceError, TraceEvent, load_trace

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


def render_comparison(findings: Sequence[Finding], old_name: str) -> str:
    rows = [
        [f.metric, _num(f.old), _num(f.new), f.change, "REGRESSION" if f.regression else "ok"]
        for f in findings
    ]
    return table([f"vs {old_name}", "old", "new", "change", ""], rows)


def _num(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")


def render_summary(results: dict[str, object]) -> str:
    s = results["summary"]
    assert isinstance(s, dict)
    rows = []
    for name, key in (("ttfa (last fragment -> audio)", "ttfa_ms"), ("gap before sentence", "gap_ms")):
        d = s[key]
        rows.append([name, d["count"], *(_ms(d[p]) for p in ("p50", "p95", "p99", "max"))])
    lines = [
        f"replay {results['trace']}  speed x{results['speed']}  {s['sessions']} sessions  "
        f"{s['sentences']} sentences  {s['audio_s']} s audio",
        table(["per sentence (ms)", "count", "p50", "p95", "p99", "max"], rows),
        f"engines: {_counts(s['engines'])}   cached: {s['cached']}   fallbacks: {_counts(s['fallbacks'])}",
        f"stalled sentences: {s['stalled_sentences']} ({s['stall_ms']} ms)   errors: {_counts(s['errors'])}"
        f"   unmatched sentences: {s['unmatched']}",
    ]
    return "\n".join(lines)


def _ms(v: object) -> str:
    return "-" if v is None else f"{float(v):.1f}"  # type: ignore[arg-type]


def _counts(d: object) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) if isinstance(d, dict) and d else "none"


def results_dict(
    trace_name: str,
    speed: float,
    url: str,
    sessions: Sequence[SessionResult],
    meta: dict[str, object] | None = None,
) -> dict[str, object]:
    def sentence(s: SentenceResult) -> dict[str, object]:
        d = asdict(s)
        d["stall_s"] = round(s.stall_s, 4)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}

    return {
        "trace": trace_name,
        "speed": speed,
        "url": url,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trace_meta": meta or {},
        "summary": summarize(sessions),
        "sessions": [
            {
                "session": r.session,
                "failure": r.failure,
                "turns": r.turns,
                "errors": r.errors,
                "fragments": [[round(t, 4), text] for t, text in r.fragments],
                "flushes": [round(t, 4) for t in r.flushes],
                "sentences": [sentence(s) for s in r.sentences],
            }
            for r in sessions
        ],
    }


# --- the replay itself -------------------------------------------------------------------------------


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def replay_session(
    session: str,
    events: Sequence[TraceEvent],
    url: str,
    t0: float,
    speed: float,
    *,
    voice: str | None,
    prebuffer_s: float,
    timeout_s: float,
    lead_s: float = 0.5,
) -> SessionResult:
    loop = asyncio.get_running_loop()
    sent: list[Sent] = []
    received: list[Received] = []
    failure: str | None = None
    await _sleep_until(loop, t0 + events[0].t / speed - lead_s)
    try:
        async with (
            connect(url, open_timeout=timeout_s, close_timeout=1, max_size=1 << 22) as ws,
            asyncio.TaskGroup() as tg,
        ):
            await _ready(ws, timeout_s)
            if voice is not None:
                await ws.send(protocol.encode(protocol.Start(voice=voice)))
                await _ready(ws, timeout_s)
            changed = asyncio.Event()
            receiver = tg.create_task(
                _caught(_receive(ws, received, t0, changed)), name=f"replay-recv:{session}"
            )
            try:
                for ev in events:
                    await _sleep_until(loop, t0 + ev.t / speed)
                    if receiver.done():
                        break
                    msg = protocol.Flush() if ev.text is None else protocol.Text(ev.text)
                    await ws.send(protocol.encode(msg))
                    sent.append(Sent(loop.time() - t0, ev.text))
                await _settle(
                    received, sum(1 for e in events if e.text is None), changed, receiver, timeout_s
                )
            finally:
                receiver.cancel()
    except* TimeoutError:
        failure = "timeout"
    except* (OSError, InvalidHandshake):
        failure = "connect_error"
    except* ConnectionClosed as group:
        exc = group.exceptions[0]
        assert isinstance(exc, ConnectionClosed)
        failure = f"closed_{exc.rcvd.code if exc.rcvd else 'abnormal'}"
    except* ProtocolError as group:
        error = group.exceptions[0]
        assert isinstance(error, ProtocolError)
        failure = error.code
    return analyze_session(session, sent, received, prebuffer_s, failure)


async def _ready(ws: ClientConnection, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await ws.recv()
            if isinstance(raw, str) and protocol.expect(raw, protocol.Ready) is not None:
                return


async def _receive(ws: ClientConnection, out: list[Received], t0: float, changed: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    async for raw in ws:
        now = loop.time() - t0
        msg = protocol.decode(raw)
        if isinstance(msg, protocol.AudioFrame):
            out.append(Received(now, "audio", None, msg.seq, msg.samples / msg.sample_rate))
        else:
            out.append(Received(now, msg.type, msg.to_dict()))
        changed.set()


async def _caught(work: Awaitable[None]) -> Exception | None:
    """Runs ``work`` in a TaskGroup without failing the group: its exception is returned."""
    try:
        await work
    except Exception as exc:
        return exc
    return None


async def _settle(
    received: list[Received],
    flushes: int,
    changed: asyncio.Event,
    receiver: asyncio.Task[Exception | None],
    timeout_s: float,
) -> None:
    """Wait until every turn that was flushed has ended and no sentence is half-way (or the timeout)."""

    def done() -> bool:
        starts = {r.msg.get("seq") for r in received if r.type == "sentence_start" and r.msg}
        ends = {r.msg.get("seq") for r in received if r.type == "sentence_end" and r.msg}
        turn_ends = sum(1 for r in received if r.type in ("turn_end", "cancelled"))
        return turn_ends >= flushes and starts <= ends

    async with asyncio.timeout(timeout_s):
        while not done():
            if receiver.done():
                if (exc := receiver.result()) is not None:
                    raise exc  # what ended it
                return
            changed.clear()
            await changed.wait()


async def replay(
    trace: Trace,
    url: str,
    speed: float = 1.0,
    *,
    voice: str | None = None,
    prebuffer_s: float = 0.0,
    timeout_s: float = 30.0,
) -> list[SessionResult]:
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.6  # room for the first sessions to connect before their first fragment
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(
                replay_session(
                    sid, evs, url, t0, speed, voice=voice, prebuffer_s=prebuffer_s, timeout_s=timeout_s
                ),
                name=f"replay:{sid}",
            )
            for sid, evs in trace.sessions.items()
            if evs
        ]
    return [task.result() for task in tasks]


# --- command line ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sesame-voice replay", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "trace", type=Path, help="JSONL trace (clients/traces/*.jsonl or a SESAME_RECORD_DIR file)"
    )
    p.add_argument("--speed", type=float, default=1.0, help="time scale: 2 plays twice as fast")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default %(default)s)")
    p.add_argument(
        "--out", type=Path, default=Path("replay-out"), help="directory for results.json + timeline.html"
    )
    p.add_argument("--compare", type=Path, help="an earlier results.json to compare against")
    p.add_argument(
        "--threshold", type=float, default=0.2, help="relative rise that is a regression (0.2 = 20%%)"
    )
    p.add_argument("--min-delta-ms", type=float, default=5.0, help="ignore rises smaller than this")
    p.add_argument("--voice", help="send `start` with this voice first")
    p.add_argument(
        "--prebuffer-ms", type=float, default=0.0, help="listener's jitter buffer before the first audio"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a session may wait for its audio")
    try:
        a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    if a.speed <= 0:
        sys.stderr.write("sesame-voice replay: --speed must be positive\n")
        return 2
    try:
        trace = load_trace(a.trace)
        url = ws_url(a.url)
        old = json.loads(a.compare.read_text(encoding="utf-8")) if a.compare else None
    except (OSError, ValueError, TraceError) as exc:
        sys.stderr.write(f"sesame-voice replay: {exc}\n")
        return 2
    sys.stderr.write(
        f"replaying {a.trace} ({len(trace.sessions)} sessions, {trace.events} events, "
        f"{trace.duration_s / a.speed:.1f} s at x{a.speed}) into {url}\n"
    )
    sessions = asyncio.run(
        replay(trace, url, a.speed, voice=a.voice, prebuffer_s=a.prebuffer_ms / 1000.0, timeout_s=a.timeout)
    )
    results = results_dict(a.trace.name, a.speed, url, sessions, trace.meta)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(
        json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (a.out / "timeline.html").write_text(render_html(results), encoding="utf-8")
    sys.stdout.write(render_summary(results) + "\n")
    sys.stdout.write(f"results:  {a.out / 'results.json'}\ntimeline: {a.out / 'timeline.html'}\n")
    status = 0
    summary = results["summary"]
    assert isinstance(summary, dict)
    if old is not None:
        old_summary = old.get("summary", old) if isinstance(old, dict) else {}
        findings = compare(old_summary, summary, a.threshold, a.min_delta_ms)
        sys.stdout.write(render_comparison(findings, a.compare.name) + "\n")
        regressions = [f for f in findings if f.regression]
        if regressions:
            sys.stdout.write(f"REGRESSION: {', '.join(f.metric for f in regressions)}\n")
            status = 1
    if any(r.failure for r in sessions):
        status = 1
    return status
