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
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import httpx

from clients.endpoint import BadUrl, configured_url, gateway_urls
from clients.load_requests import (
    DEFAULT_TEXTS,
    LoadConfig,
    Outcome,
    RunResult,
    run_tts,
    run_ws,
    schedule,
)
from clients.report import render, report

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
    p.add_argument(
        "--url",
        default=configured_url(),
        help="the gateway: an http(s) base or a ws(s) URL (default: SESAME_URL, else %(default)s)",
    )
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
        gateway_urls(a.url)
    except BadUrl as exc:
        p.exit(2, f"sesame-voice loadtest: {exc}\n")
    try:
        texts = read_texts(a.texts) if a.texts else DEFAULT_TEXTS
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
