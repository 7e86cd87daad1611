"""``sesame-voice loadtest``: an open-loop load generator for a running gateway.

Open loop: requests start on a fixed schedule (``--rate`` per second for ``--duration`` seconds,
evenly spaced, or Poisson arrivals with ``--arrivals poisson``) whether or not the server keeps up,
and every latency is measured from the request's *scheduled* start, so a slow server cannot hide
its queueing delay by slowing the client down (no coordinated omission). At most
``--concurrency`` requests are in flight; a request whose start finds that many in flight is not
delayed but counted as ``dropped_by_cap``.

Modes:

``--mode tts``  ``POST /tts {text, voice}``. TTFA is the time to the first response byte (the
                gateway answers once the whole WAV is ready, so it is close to the total).
``--mode ws``   one websocket session per request (protocol v1, docs/protocol.md): ``start`` with
                the voice, the text as one ``speak`` (or as ``text`` fragments of
                ``--fragment-chars`` plus ``flush``), then every message until ``turn_end``. TTFA
                is from sending the text to the first audio frame. Engines come from
                ``sentence_start.engine``, fallbacks from ``fallback`` events. A session
                *underruns* when an audio frame arrives after all audio received before it would
                have finished playing (a playout clock that starts at the first frame, plus
                ``--prebuffer-ms``).

Output: a summary table on stdout, the same data as JSON with ``--json OUT``, and a progress bar
on stderr. Exit status 0 when no request failed, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
import wave
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from broker.errors import ProtocolError

from . import protocol
from .stats import Playout, Summary, table

Mode = Literal["tts", "ws"]
Arrivals = Literal["uniform", "poisson"]

DEFAULT_TEXTS = (
    "Good morning. The weather today is mild, with a light breeze from the west.",
    "Thanks for waiting. I found three restaurants nearby that are open late.",
    "Your package left the warehouse this morning. It should arrive on Thursday.",
    "Let me check that for you. The next train to the city leaves at a quarter past six.",
    "That is a great question! Bees can see ultraviolet light, which helps them find nectar.",
    "I have set a timer for ten minutes. Would you like me to remind you about anything else?",
    "The meeting was moved to Friday afternoon. Everyone on the list has been told.",
    "Here is a quick tip. Drink a glass of water before each meal.",
    "Sure. The recipe needs two eggs, a cup of flour, and a pinch of salt.",
    "It is seven degrees outside right now. Later this evening it may rain.",
    "I did not catch that. Could you say it once more, a little more slowly?",
    "The museum opens at nine. Entry is free on the first Sunday of every month.",
)


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str = "http://127.0.0.1:8000"
    mode: Mode = "tts"
    rate: float = 5.0
    duration_s: float = 10.0
    concurrency: int = 64
    texts: tuple[str, ...] = DEFAULT_TEXTS
    voice: str = "maya"
    timeout_s: float = 30.0
    arrivals: Arrivals = "uniform"
    seed: int = 0
    fragment_chars: int = 0  # ws: 0 sends one `speak`; N sends `text` fragments of N chars + `flush`
    prebuffer_s: float = 0.0
    progress: bool = True

    @property
    def ws_url(self) -> str:
        return ws_url(self.url)


def ws_url(http_url: str) -> str:
    """http://host:port[/...] -> ws://host:port/ws (https -> wss)."""
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) or ws(s) URL: {http_url!r}")
    path = parts.path if parts.path.endswith("/ws") else parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def schedule(rate: float, duration_s: float, arrivals: Arrivals = "uniform", seed: int = 0) -> list[float]:
    """Start offsets (seconds from the start) of every request in the run."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if arrivals == "uniform":
        n = round(rate * duration_s)
        return [i / rate for i in range(n)]
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        out.append(t)
        t += rng.expovariate(rate)
    return out


# --- one request's outcome ---------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    index: int
    scheduled_s: float  # offset from the run's start
    error: str | None = None  # None: success; else its kind ("timeout", "http_503", "speech_unavailable")
    start_lag_s: float = 0.0  # how late the client actually started it (event loop lag)
    connect_s: float | None = None  # ws: scheduled start -> `ready`
    ttfa_s: float | None = None  # ws: text sent -> first audio; tts: scheduled start -> first byte
    ttfa_sched_s: float | None = None  # scheduled start -> first audio (both modes)
    total_s: float | None = None  # scheduled start -> turn_end / last byte
    audio_s: float = 0.0
    sentences: int = 0
    engines: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    restarts: int = 0
    underruns: int = 0
    gap_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # error codes seen (a session may go on after one)


async def run_tts(
    client: httpx.AsyncClient, cfg: LoadConfig, text: str, out: Outcome, t_sched: float
) -> None:
    loop = asyncio.get_running_loop()
    body = bytearray()
    first: float | None = None
    try:
        async with asyncio.timeout(cfg.timeout_s):
            url = cfg.url.rstrip("/") + "/tts"
            async with client.stream("POST", url, json={"text": text, "voice": cfg.voice}) as r:
                async for chunk in r.aiter_bytes():
                    if first is None and chunk:
                        first = loop.time()
                    body += chunk
                status, ctype = r.status_code, r.headers.get("content-type", "")
                undelivered = r.headers.get("x-sesame-undelivered-sentences", "0")
    except TimeoutError:
        out.error = "timeout"
        return
    except httpx.ConnectError:
        out.error = "connect_error"
        return
    except httpx.HTTPError as exc:
        out.error = f"http_{type(exc).__name__}"
        return
    end = loop.time()
    out.total_s = end - t_sched
    if first is not None:
        out.ttfa_s = out.ttfa_sched_s = first - t_sched
    if status != 200:
        out.error = f"http_{status}"
        return
    if not ctype.startswith("audio/wav"):
        out.error = "bad_content_type"
        return
    try:
        with wave.open(io.BytesIO(bytes(body))) as w:
            out.audio_s = w.getnframes() / w.getframerate()
    except (wave.Error, EOFError):
        out.error = "bad_wav"
        return
    if undelivered not in ("", "0"):
        out.error = "undelivered_sentences"


async def run_ws(cfg: LoadConfig, text: str, out: Outcome, t_sched: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(cfg.timeout_s):
            async with connect(cfg.ws_url, open_timeout=None, close_timeout=1, max_size=1 << 22) as ws:
                await _expect_ready(ws)
                await ws.send(protocol.encode(protocol.Start(voice=cfg.voice)))
                await _expect_ready(ws)
                out.connect_s = loop.time() - t_sched
                sent = loop.time()
                if cfg.fragment_chars > 0:
                    for i in range(0, len(text), cfg.fragment_chars):
                        await ws.send(protocol.encode(protocol.Text(text[i : i + cfg.fragment_chars])))
                    await ws.send(protocol.encode(protocol.Flush()))
                else:
                    await ws.send(protocol.encode(protocol.Speak(text)))
                await _collect_turn(ws, cfg, out, t_sched, sent)
    except TimeoutError:
        out.error = "timeout"
    except (InvalidStatus, InvalidHandshake):
        out.error = "handshake_failed"
    except OSError:
        out.error = "connect_error"
    except ConnectionClosed as exc:
        out.error = f"closed_{exc.rcvd.code if exc.rcvd else 'abnormal'}"
    except ProtocolError as exc:
        out.error = exc.code


async def _expect_ready(ws: ClientConnection) -> protocol.Ready:
    while (ready := protocol.expect(await ws.recv(), protocol.Ready)) is None:
        pass
    return ready


async def _collect_turn(
    ws: ClientConnection, cfg: LoadConfig, out: Outcome, t_sched: float, sent: float
) -> None:
    loop = asyncio.get_running_loop()
    play = Playout(prebuffer_s=cfg.prebuffer_s)
    while True:
        msg = protocol.decode(await ws.recv())
        now = loop.time()
        match msg:
            case protocol.AudioFrame() as frame:
                if not play.started:
                    out.ttfa_s = now - sent
                    out.ttfa_sched_s = now - t_sched
                play.audio(now, frame.samples / frame.sample_rate)
            case protocol.SentenceStart(engine=engine, restart=restart):
                out.engines.append(engine)
                out.restarts += restart
            case protocol.SentenceEnd():
                out.sentences += 1
            case protocol.Fallback(from_engine=f, to_engine=t):
                out.fallbacks.append(f"{f}->{t}")
            case protocol.Error(code=code):
                out.errors.append(code)
            case protocol.TurnEnd():
                out.total_s = now - t_sched
                break
    out.audio_s = play.audio_s
    out.underruns = play.underruns
    out.gap_s = play.gap_s
    if out.errors:
        out.error = out.errors[0]
    elif play.audio_s == 0:
        out.error = "no_audio"


# --- the run -----------------------------------------------------------------------------------------


class ProgressBar:
    """A one-line text bar on stderr, redrawn in place on a terminal, one line per 10% otherwise."""

    def __init__(self, total_s: float, stream: TextIO | None = None, width: int = 28) -> None:
        self.total_s = total_s
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def draw(self, elapsed_s: float, counts: Counter[str]) -> None:
        frac = min(1.0, max(0.0, elapsed_s / self.total_s)) if self.total_s > 0 else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = (
            f"[{bar}] {elapsed_s:5.1f}/{self.total_s:.0f}s  started {counts['started']}  "
            f"ok {counts['ok']}  errors {counts['error']}  in flight {counts['in_flight']}  "
            f"dropped {counts['dropped']}"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif int(frac * 10) > self._last_decile:
            self._last_decile = int(frac * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass(slots=True)
class RunResult:
    config: LoadConfig
    outcomes: list[Outcome]
    scheduled: int
    dropped_by_cap: int
    wall_s: float  # first scheduled start -> last request finished
    schedule_s: float  # the scheduled span (duration)


async def run(cfg: LoadConfig) -> RunResult:
    """Run the whole load test; returns every request's outcome."""
    offsets = schedule(cfg.rate, cfg.duration_s, cfg.arrivals, cfg.seed)
    loop = asyncio.get_running_loop()
    counts: Counter[str] = Counter()
    outcomes: list[Outcome] = []
    bar = ProgressBar(cfg.duration_s) if cfg.progress else None
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(cfg.timeout_s)) as client:

        async def one(i: int, offset: float, t_sched: float) -> None:
            out = Outcome(i, offset, start_lag_s=loop.time() - t_sched)
            text = cfg.texts[i % len(cfg.texts)]
            try:
                if cfg.mode == "tts":
                    await run_tts(client, cfg, text, out, t_sched)
                else:
                    await run_ws(cfg, text, out, t_sched)
            except Exception as exc:  # a client bug is reported as an error kind, not a crash of the run
                out.error = f"client_{type(exc).__name__}"
            outcomes.append(out)
            counts["in_flight"] -= 1
            counts["ok" if out.error is None else "error"] += 1

        t0 = loop.time() + 0.05
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(_draw(bar, counts, t0), name="loadtest-progress") if bar else None
            async with asyncio.TaskGroup() as sessions:
                for i, offset in enumerate(offsets):
                    t_sched = t0 + offset
                    delay = t_sched - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if counts["in_flight"] >= cfg.concurrency:
                        counts["dropped"] += 1
                        continue
                    counts["in_flight"] += 1
                    counts["started"] += 1
                    sessions.create_task(one(i, offset, t_sched), name=f"loadtest-{i}")
            wall = loop.time() - t0
            if ticker is not None:
                ticker.cancel()
        if bar is not None:
            bar.draw(min(wall, cfg.duration_s), counts)
            bar.close()
    outcomes.sort(key=lambda o: o.index)
    return RunResult(cfg, outcomes, len(offsets), counts["dropped"], wall, cfg.duration_s)


async def _draw(bar: ProgressBar, counts: Counter[str], t0: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        bar.draw(max(0.0, loop.time() - t0), counts)
        await asyncio.sleep(0.25)


# --- the report --------------------------------------------------------------------------------------


def report(result: RunResult) -> dict[str, object]:
    """Everything the run measured, JSON-ready; latencies in milliseconds."""
    cfg, outs = result.config, result.outcomes
    ok = [o for o in outs if o.error is None]
    errors = Counter(o.error for o in outs if o.error is not None)
    codes = Counter(code for o in outs for code in o.errors)
    engines = Counter(e for o in outs for e in o.engines)
    fallbacks = Counter(f for o in outs for f in o.fallbacks)
    done = [o for o in outs if o.total_s is not None]

    def summary(attr: str, only_ok: bool = True) -> dict[str, float | int | None]:
        pool = ok if only_ok else done
        return Summary.of(getattr(o, attr) for o in pool if getattr(o, attr) is not None).to_dict(1000.0)

    latency: dict[str, object] = {
        "ttfa": summary("ttfa_s"),
        "ttfa_from_schedule": summary("ttfa_sched_s"),
        "total": summary("total_s"),
        "start_lag": Summary.of(o.start_lag_s for o in outs).to_dict(1000.0),
    }
    if cfg.mode == "ws":
        latency["connect"] = summary("connect_s")
    ws_sessions = [o for o in outs if o.audio_s > 0]
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k != "texts"} | {"texts": len(cfg.texts)},
        "scheduled": result.scheduled,
        "started": len(outs),
        "completed": len(done),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "dropped_by_cap": result.dropped_by_cap,
        "offered_rate": round(result.scheduled / result.schedule_s, 3),
        "achieved_rate": round(len(ok) / result.wall_s, 3) if result.wall_s > 0 else None,
        "wall_s": round(result.wall_s, 3),
        "latency_ms": latency,
        "errors_by_kind": dict(errors.most_common()),
        "error_codes": dict(codes.most_common()),
        "engines": dict(engines.most_common()),
        "fallbacks": dict(fallbacks.most_common()),
        "restarts": sum(o.restarts for o in outs),
        "audio_s": round(sum(o.audio_s for o in outs), 3),
        "underruns": {
            "sessions": sum(1 for o in ws_sessions if o.underruns),
            "of_sessions": len(ws_sessions),
            "events": sum(o.underruns for o in outs),
            "silence_ms": round(sum(o.gap_s for o in outs) * 1000, 1),
            "prebuffer_ms": round(cfg.prebuffer_s * 1000, 1),
        }
        if cfg.mode == "ws"
        else None,
    }


def render(rep: dict[str, object]) -> str:
    """The summary table printed at the end of a run."""
    cfg = rep["config"]
    assert isinstance(cfg, dict)
    lat = rep["latency_ms"]
    assert isinstance(lat, dict)
    lines = [
        f"sesame-voice loadtest  mode={cfg['mode']}  url={cfg['url']}  rate={cfg['rate']}/s  "
        f"duration={cfg['duration_s']}s  concurrency={cfg['concurrency']}  arrivals={cfg['arrivals']}",
        f"requests: scheduled {rep['scheduled']}  started {rep['started']}  ok {rep['ok']}  "
        f"errors {rep['errors']}  dropped_by_cap {rep['dropped_by_cap']}  offered {rep['offered_rate']}/s  "
        f"achieved {rep['achieved_rate']}/s",
        "",
    ]
    names = {
        "ttfa": "ttfa (send->audio)" if cfg["mode"] == "ws" else "ttfb (schedule->byte)",
        "ttfa_from_schedule": "ttfa (schedule->audio)",
        "connect": "connect (schedule->ready)",
        "total": "total (schedule->end)",
        "start_lag": "client start lag",
    }
    rows = []
    for key in ("connect", "ttfa", "ttfa_from_schedule", "total", "start_lag"):
        s = lat.get(key)
        if not isinstance(s, dict) or (key == "ttfa_from_schedule" and cfg["mode"] == "tts"):
            continue
        rows.append([names[key], s["count"], *(_ms(s[p]) for p in ("p50", "p95", "p99", "max"))])
    lines.append(table(["latency (ms)", "count", "p50", "p95", "p99", "max"], rows))
    lines.append("")
    lines.append("errors by kind: " + _counts(rep["errors_by_kind"]))
    if rep.get("error_codes"):
        lines.append("error codes:    " + _counts(rep["error_codes"]))
    if cfg["mode"] == "ws":
        lines.append("engines:        " + _counts(rep["engines"], share=True))
        lines.append("fallbacks:      " + _counts(rep["fallbacks"]) + f"  (restarts {rep['restarts']})")
        u = rep["underruns"]
        assert isinstance(u, dict)
        lines.append(
            f"underruns:      {u['sessions']} of {u['of_sessions']} sessions  ({u['events']} gaps, "
            f"{u['silence_ms']} ms silence, prebuffer {u['prebuffer_ms']} ms)"
        )
    lines.append(f"audio received: {rep['audio_s']} s")
    return "\n".join(lines)


def _ms(v: object) -> str:
    return "-" if v is None else f"{float(v):.1f}"  # type: ignore[arg-type]


def _counts(counts: object, share: bool = False) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    total = sum(counts.values())
    return ", ".join(f"{k} {v}" + (f" ({100 * v / total:.1f}%)" if share else "") for k, v in counts.items())


# --- command line ------------------------------------------------------------------------------------


def read_texts(path: Path) -> tuple[str, ...]:
    texts = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not texts:
        raise ValueError(f"{path} has no non-empty lines")
    return texts


def parse_args(argv: Sequence[str]) -> tuple[LoadConfig, Path | None]:
    p = argparse.ArgumentParser(
        prog="sesame-voice loadtest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default %(default)s)")
    p.add_argument("--mode", choices=("tts", "ws"), default="tts")
    p.add_argument("--rate", type=float, default=5.0, help="requests (tts) or sessions (ws) per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of scheduled starts")
    p.add_argument("--concurrency", type=int, default=64, help="cap on requests in flight")
    p.add_argument("--texts", type=Path, help="a file of texts, one per line (default: built-in sentences)")
    p.add_argument("--voice", default="maya")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    p.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    p.add_argument("--seed", type=int, default=0, help="for --arrivals poisson")
    p.add_argument("--fragment-chars", type=int, default=0, help="ws: send text in fragments of N chars")
    p.add_argument("--prebuffer-ms", type=float, default=0.0, help="ws: client jitter buffer for underruns")
    p.add_argument("--json", type=Path, dest="json_out", help="write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    if a.rate <= 0 or a.duration <= 0 or a.concurrency < 1 or a.timeout <= 0:
        p.error("--rate, --duration, --timeout must be positive and --concurrency at least 1")
    try:
        texts = read_texts(a.texts) if a.texts else DEFAULT_TEXTS
        ws_url(a.url)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    cfg = LoadConfig(
        url=a.url,
        mode=a.mode,
        rate=a.rate,
        duration_s=a.duration,
        concurrency=a.concurrency,
        texts=texts,
        voice=a.voice,
        timeout_s=a.timeout,
        arrivals=a.arrivals,
        seed=a.seed,
        fragment_chars=a.fragment_chars,
        prebuffer_s=a.prebuffer_ms / 1000.0,
        progress=not a.no_progress,
    )
    return cfg, a.json_out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, json_out = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    started = time.time()
    result = asyncio.run(run(cfg))
    rep = report(result) | {"started_at": started}
    sys.stdout.write(render(rep) + "\n")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
        sys.stdout.write(f"report written to {json_out}\n")
    return 0 if rep["errors"] == 0 and rep["ok"] else 1
