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
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from broker.errors import ProtocolError
from clients import protocol
from clients.endpoint import configured_url, gateway_urls
from clients.replay_analysis import (
    Received,
    Sent,
    SessionResult,
    analyze_session,
    compare,
)
from clients.report import render_comparison, render_summary, results_dict
from clients.timeline import render_html
from clients.trace import Trace, TraceError, TraceEvent, load_trace


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
    p.add_argument(
        "--url",
        default=configured_url(),
        help="the gateway: an http(s) base or a ws(s) URL (default: SESAME_URL, else %(default)s)",
    )
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
        url = gateway_urls(a.url).ws  # BadUrl is a ValueError: one line, exit 2
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
