"""How much one gateway serves: concurrent real-time websocket sessions, and POST /tts rate.

Stack: mosquitto, the gateway (``SESAME_TIERS=workers,espeak-ng``, sentence cache on, session events
published on MQTT as shipped) and two espeak-ng workers. The cache is warmed first by speaking every
text once, so during the steps the audio comes from the gateway's memory: this measures the
gateway's streaming capacity, not synthesis.

1. **Sessions.** For each step N: N websocket sessions, their starts spread over the first seconds,
   each talking continuously for the step: ``speak`` a two-sentence turn, receive it to
   ``turn_end``, wait until the listener has heard it (a playout clock from the first frame), then
   the next turn. A turn *underruns* when a frame arrives after the audio before it finished playing
   (no jitter buffer: the strict test; the web client's 100 ms prebuffer is shown beside it). A step
   passes with zero underruns and zero errors.
2. **POST /tts.** Open-loop rates (``clients.loadtest``), each for a few seconds: the highest rate
   whose p99 stays under 1 s with no errors.
3. **``--listeners``**: people talking to Piper workers, N rising until the first gap or fallback,
   and the greedy case (``--greedy K``): ``bench/_listeners.py``.

    .venv/bin/python bench/capacity.py [--steps 25,50,100,150,200,250,300] [--step-seconds 12]
                                       [--tts-rates 20,40,80,160,240,320] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench._stack import Stack, machine
from broker.audio import AudioFrame
from clients.load_requests import DEFAULT_TEXTS, LoadConfig
from clients.loadtest import run as run_load
from clients.report import report
from clients.stats import Playout, Summary, table
from tests.support.procfs import cpu_seconds

HEADER = (
    "capacity: concurrent real-time websocket sessions and POST /tts rate of one gateway (audio from cache)"
)
PREBUFFERS = (0.0, 0.1)
PAUSE_S = 0.2  # between a turn heard and the next one sent


@dataclass(slots=True)
class TurnLog:
    ttfa_s: float | None = None
    frames: list[tuple[float, float]] = field(default_factory=list)  # (arrival, duration)
    error: str | None = None

    def underruns(self, prebuffer_s: float) -> int:
        play = Playout(prebuffer_s=prebuffer_s)
        for arrival, duration in self.frames:
            play.audio(arrival, duration)
        return play.underruns

    def heard_by(self, prebuffer_s: float = 0.0) -> float:
        play = Playout(prebuffer_s=prebuffer_s)
        for arrival, duration in self.frames:
            play.audio(arrival, duration)
        return play.end if play.end is not None else 0.0


async def session(ws_url: str, start_at: float, stop_at: float, offset: int, turns: list[TurnLog]) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    k = offset
    try:
        async with connect(ws_url, open_timeout=30, close_timeout=2, max_size=1 << 22) as ws:
            await ws.recv()  # ready
            while loop.time() < stop_at:
                turn = TurnLog()
                turns.append(turn)
                text = DEFAULT_TEXTS[k % len(DEFAULT_TEXTS)]
                k += 1
                sent = loop.time()
                await ws.send(json.dumps({"type": "speak", "text": text}))
                async with asyncio.timeout(30):
                    while True:
                        raw = await ws.recv()
                        now = loop.time()
                        if isinstance(raw, bytes):
                            frame = AudioFrame.from_bytes(raw)
                            if turn.ttfa_s is None:
                                turn.ttfa_s = now - sent
                            turn.frames.append((now, frame.samples / frame.sample_rate))
                            continue
                        msg = json.loads(raw)
                        if msg["type"] == "error":
                            turn.error = str(msg.get("code"))
                        elif msg["type"] == "turn_end":
                            break
                if not turn.frames and turn.error is None:
                    turn.error = "no_audio"
                await asyncio.sleep(max(0.0, turn.heard_by() - loop.time()) + PAUSE_S)
    except TimeoutError:
        turns.append(TurnLog(error="timeout"))
    except (OSError, ConnectionClosed) as exc:
        turns.append(TurnLog(error=type(exc).__name__))


@dataclass(slots=True)
class Step:
    sessions: int
    turns: int
    errors: int
    ttfa_ms: dict[str, float | int | None]
    underrun_turns: dict[str, int]
    sessions_with_underrun: int
    gateway_cpu: float  # CPU seconds per second of the step: the gateway process
    broker_cpu: float  # mosquitto
    client_cpu: float  # this process (the sessions' client side)
    mqtt_copies_dropped: int
    frames_per_s: float
    ttfa_limit_ms: float

    @property
    def passed(self) -> bool:
        p99 = self.ttfa_ms["p99"]
        return (
            self.errors == 0
            and self.underrun_turns["0ms"] == 0
            and self.turns > 0
            and p99 is not None
            and p99 < self.ttfa_limit_ms
        )


def dropped_copies(http_url: str) -> int:
    text = httpx.get(f"{http_url}/metrics", timeout=10).text
    total = 0.0
    for m in re.finditer(r'^sesame_dropped_total\{what="mqtt_publish"\} ([0-9.e+]+)$', text, re.M):
        total += float(m.group(1))
    return int(total)


async def run_step(ws_url: str, n: int, seconds: float, ramp_s: float) -> tuple[list[list[TurnLog]], float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    stop_at = t0 + seconds
    logs: list[list[TurnLog]] = [[] for _ in range(n)]
    await asyncio.gather(*(session(ws_url, t0 + ramp_s * i / n, stop_at, i, logs[i]) for i in range(n)))
    return logs, loop.time() - t0


def summarize_step(
    n: int,
    logs: list[list[TurnLog]],
    wall: float,
    cpu: tuple[float, float, float],
    dropped: int,
    *,
    ttfa_limit_ms: float,
) -> Step:
    turns = [t for s in logs for t in s]
    ok = [t for t in turns if t.error is None]
    return Step(
        sessions=n,
        turns=len(ok),
        errors=sum(1 for t in turns if t.error is not None),
        ttfa_ms=Summary.of(t.ttfa_s for t in ok if t.ttfa_s is not None).to_dict(1000.0),
        underrun_turns={f"{p * 1000:.0f}ms": sum(1 for t in ok if t.underruns(p)) for p in PREBUFFERS},
        sessions_with_underrun=sum(1 for s in logs if any(t.underruns(0.0) for t in s if t.error is None)),
        gateway_cpu=cpu[0] / wall if wall > 0 else 0.0,
        broker_cpu=cpu[1] / wall if wall > 0 else 0.0,
        client_cpu=cpu[2] / wall if wall > 0 else 0.0,
        mqtt_copies_dropped=dropped,
        frames_per_s=sum(len(t.frames) for t in ok) / wall if wall > 0 else 0.0,
        ttfa_limit_ms=ttfa_limit_ms,
    )


async def warm_cache(ws_url: str) -> None:
    async def one(text: str) -> None:
        async with connect(ws_url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "speak", "text": text}))
            async with asyncio.timeout(60):
                while True:
                    raw = await ws.recv()
                    if isinstance(raw, str) and json.loads(raw)["type"] == "turn_end":
                        return

    for i in range(0, len(DEFAULT_TEXTS), 4):
        await asyncio.gather(*(one(t) for t in DEFAULT_TEXTS[i : i + 4]))
    await asyncio.gather(*(one(t) for t in DEFAULT_TEXTS[:4]))  # every sentence now answered from cache


def tts_step(url: str, rate: float, seconds: float) -> dict[str, object]:
    cfg = LoadConfig(
        url=url, mode="tts", rate=rate, duration_s=seconds, concurrency=512, timeout_s=15, progress=False
    )
    return report(asyncio.run(run_load(cfg)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--listeners" in args:  # the listeners' capacity on synthesis (bench/_listeners.py)
        from bench._listeners import main as listeners

        return listeners(args)
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--steps", default="25,50,100,150,200,250,300", help="concurrent sessions per step")
    ap.add_argument(
        "--ttfa-p99-ms",
        type=float,
        default=500.0,
        help="a step is real time only when the turns' TTFA p99 stays under this (default 500)",
    )
    ap.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gateway setting, e.g. SESAME_PUBLISH_SESSION_EVENTS=false",
    )
    ap.add_argument("--step-seconds", type=float, default=12.0)
    ap.add_argument(
        "--tts-rates", default="20,40,80,160,240,320", help="POST /tts requests per second per step"
    )
    ap.add_argument("--tts-seconds", type=float, default=6.0)
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="one small step of each (for the test suite)")
    a = ap.parse_args(args)
    steps = [5] if a.smoke else [int(x) for x in a.steps.split(",")]
    rates = [5.0] if a.smoke else [float(x) for x in a.tts_rates.split(",")]
    seconds = 3.0 if a.smoke else a.step_seconds
    tts_seconds = 2.0 if a.smoke else a.tts_seconds
    results: list[Step] = []
    tts: list[dict[str, object]] = []
    extra = dict(kv.split("=", 1) for kv in a.gateway_env)
    with Stack({"SESAME_TIERS": "workers,espeak-ng", **extra}) as stack:
        stack.start_worker("espeak-1", "espeak-ng", SESAME_MAX_BATCH="4")
        stack.start_worker("espeak-2", "espeak-ng", SESAME_MAX_BATCH="4")
        asyncio.run(warm_cache(stack.ws_url))
        assert stack.gateway is not None and stack.broker.proc is not None
        gw, mq = stack.gateway.proc.pid, stack.broker.proc.pid
        failures = 0
        for n in steps:
            cpu0 = (cpu_seconds(gw), cpu_seconds(mq), time.process_time())
            drop0 = dropped_copies(stack.http_url)
            logs, wall = asyncio.run(run_step(stack.ws_url, n, seconds, ramp_s=min(3.0, seconds / 4)))
            cpu = (cpu_seconds(gw) - cpu0[0], cpu_seconds(mq) - cpu0[1], time.process_time() - cpu0[2])
            step = summarize_step(
                n, logs, wall, cpu, dropped_copies(stack.http_url) - drop0, ttfa_limit_ms=a.ttfa_p99_ms
            )
            results.append(step)
            sys.stderr.write(
                f"  {n} sessions: {step.turns} turns, underrun turns {step.underrun_turns}, "
                f"errors {step.errors}, "
                f"ttfa p99 {step.ttfa_ms['p99']} ms, cpu gateway {step.gateway_cpu:.2f} "
                f"broker {step.broker_cpu:.2f} client {step.client_cpu:.2f}\n"
            )
            failures = failures + 1 if not step.passed else 0
            if failures >= 2:
                break
        for rate in rates:
            rep = tts_step(stack.http_url, rate, tts_seconds)
            tts.append(rep)
            p99 = _p99(rep)
            sys.stderr.write(f"  tts {rate}/s: p99 {p99} ms, errors {rep['errors']}\n")
            if rep["errors"] or p99 is None or p99 >= 1000:
                break
    print_report(a, results, tts, seconds, extra)
    return 0


def _p99(rep: dict[str, object]) -> float | None:
    latency = rep["latency_ms"]
    assert isinstance(latency, dict)
    v = latency["total"]["p99"]
    return None if v is None else float(v)


def print_report(
    a: argparse.Namespace,
    results: list[Step],
    tts: list[dict[str, object]],
    seconds: float,
    extra: dict[str, str],
) -> None:
    print(HEADER)
    print(
        f"machine: {machine()}; gateway, mosquitto, 2 espeak-ng workers and this client share it; "
        f"{seconds:.0f} s per step; gateway env: {extra or 'as shipped'}"
    )
    rows = [
        [
            s.sessions,
            s.turns,
            s.errors,
            _v(s.ttfa_ms["p50"]),
            _v(s.ttfa_ms["p99"]),
            s.underrun_turns["0ms"],
            s.underrun_turns["100ms"],
            s.sessions_with_underrun,
            f"{s.frames_per_s:.0f}",
            f"{s.gateway_cpu:.2f}/{s.broker_cpu:.2f}/{s.client_cpu:.2f}",
            s.mqtt_copies_dropped,
            "yes" if s.passed else "no",
        ]
        for s in results
    ]
    print(
        table(
            [
                "sessions",
                "turns",
                "errors",
                "ttfa p50 ms",
                "ttfa p99 ms",
                "underrun turns",
                "underrun (100ms buf)",
                "sessions w/ underrun",
                "frames/s",
                "cpu gw/broker/client",
                "mqtt copies dropped",
                "real time",
            ],
            rows,
        )
    )
    best = max((s.sessions for s in results if s.passed), default=0)
    print(
        f"most concurrent real-time sessions (zero underruns without a jitter buffer, no errors, "
        f"TTFA p99 < {a.ttfa_p99_ms:.0f} ms): {best}  (target >= 200: {'met' if best >= 200 else 'NOT met'})"
    )
    rows = []
    for rep in tts:
        cfg, latency = rep["config"], rep["latency_ms"]
        assert isinstance(cfg, dict) and isinstance(latency, dict)
        total = latency["total"]
        rows.append(
            [
                cfg["rate"],
                rep["achieved_rate"],
                rep["ok"],
                rep["errors"],
                rep["dropped_by_cap"],
                _v(total["p50"]),
                _v(total["p95"]),
                _v(total["p99"]),
                _v(total["max"]),
            ]
        )
    print(
        table(
            [
                "POST /tts rate/s",
                "achieved/s",
                "ok",
                "errors",
                "dropped",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
            ],
            rows,
        )
    )
    good = [r for r in tts if not r["errors"] and (_p99(r) or 1e9) < 1000]
    best_rate = max((float(r["config"]["rate"]) for r in good), default=0.0)  # type: ignore[index]
    print(f"highest POST /tts rate with p99 < 1 s and no errors: {best_rate:g}/s")
    if a.json_out:
        a.json_out.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "gateway_env": extra,
                    "step_seconds": seconds,
                    "sessions": [asdict(s) | {"passed": s.passed} for s in results],
                    "tts": tts,
                    "best_sessions": best,
                    "best_tts_rate": best_rate,
                },
                indent=1,
            )
            + "\n"
        )


def _v(x: object) -> str:
    return "-" if x is None else f"{float(x):.1f}"  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
