"""The gateway's event-loop lag while long mp3 requests stream (issue 19, "encoding off the loop").

A real gateway in this process (Hub + the HTTP app under uvicorn, espeak-ng as its voice, an
in-memory MQTT link: no broker needed), and a probe task on the same event loop that asks to
wake every ``--tick-ms`` and records how late it woke: that lateness is what every session's
frames and heartbeats wait while something else holds the loop. Measured idle, then while a
client thread sends long requests one after another:

* ``tts-mp3``: ``POST /tts`` with ``format=mp3`` at 48 kHz (the whole answer encoded at the end);
* ``speech-mp3``: ``POST /v1/audio/speech`` with ``response_format=mp3`` (encoded as it streams);
* ``ws-mp3``: a websocket session with ``format=mp3`` at 48 kHz (one encoded frame per sentence).

Before/after: run this same file against the code before the change, e.g.
``git archive <commit> | tar -x -C /tmp/before && cp bench/loop_lag.py /tmp/before/bench/`` and
run it there. Figures in docs/benchmarks.md were taken on a shared, loaded 2-core machine.

    .venv/bin/python bench/loop_lag.py [--requests 3] [--tick-ms 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn
from websockets.sync.client import connect

from bench._stack import machine
from stream_server.config import GatewayConfig
from stream_server.http.app import create_app
from stream_server.hub.hub import Hub
from stream_server.hub.tier_engines import build_local_engines
from synth_worker.engines import close_engines
from synth_worker.voices import VoiceMap
from tests.support.memlink import MemoryLink

SENTENCE = (
    "The committee met again on Thursday afternoon to go through every one of the proposals that had "
    "been sent in over the summer, and after a long and careful discussion it decided to keep most of them."
)


def text(sentences: int) -> str:
    return " ".join([SENTENCE] * sentences)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Probe:
    """Wakes every ``tick`` seconds on the loop; keeps how late each wake was while recording."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.tick)
            late = time.perf_counter() - start - self.tick
            if self.recording:
                self.lags.append(max(0.0, late))

    async def measure(self, work: Callable[[], None]) -> list[float]:
        self.lags, self.recording = [], True
        await asyncio.to_thread(work)
        self.recording = False
        return self.lags


def post_tts(base: str, n: int, sentences: int) -> None:
    with httpx.Client(base_url=base, timeout=300) as c:
        for _ in range(n):
            r = c.post("/tts", json={"text": text(sentences), "format": "mp3", "sample_rate": 48000})
            assert r.status_code == 200, r.text


def post_speech(base: str, n: int, sentences: int) -> None:
    with httpx.Client(base_url=base, timeout=300) as c:
        for _ in range(n):
            body = {"input": text(sentences), "response_format": "mp3"}
            with c.stream("POST", "/v1/audio/speech", json=body) as r:
                assert r.status_code == 200
                for _ in r.iter_bytes():
                    pass


def ws_session(base: str, n: int, sentences: int) -> None:
    url = base.replace("http://", "ws://") + "/ws"
    for _ in range(n):
        with connect(url, max_size=None) as ws:
            json.loads(ws.recv())  # ready
            ws.send(json.dumps({"type": "start", "format": "mp3", "sample_rate": 48000}))
            json.loads(ws.recv())
            ws.send(json.dumps({"type": "speak", "text": text(sentences)}))
            while True:
                msg = ws.recv()
                if isinstance(msg, str) and json.loads(msg)["type"] == "turn_end":
                    break


SCENARIOS: dict[str, Callable[[str, int, int], None]] = {
    "tts-mp3": post_tts,
    "speech-mp3": post_speech,
    "ws-mp3": ws_session,
}


async def bench(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = {
        "SESAME_GATEWAY_ID": "bench",
        "SESAME_TIERS": "espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_CACHE_PRELOAD": "false",
        "SESAME_PUBLISH_SESSION_EVENTS": "false",
        "SESAME_MAX_LENGTH": "400",
        "SESAME_TIMEOUT": "60000",
        "LOG_LEVEL": "WARNING",
    }
    config = GatewayConfig.from_env(env)
    voices = VoiceMap.load(None, "maya")
    engines = build_local_engines(config, voices)
    results: dict[str, dict[str, float]] = {}
    try:
        async with Hub(config, voices, engines, link=MemoryLink("bench")) as hub:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            server = uvicorn.Server(
                uvicorn.Config(create_app(hub), log_level="warning", lifespan="off", ws="websockets-sansio")
            )
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                await asyncio.sleep(0.01)
            probe = Probe(args.tick_ms / 1000)
            probing = asyncio.create_task(probe.run())
            for warm in SCENARIOS.values():  # engines, encoders and their imports warm first
                await asyncio.to_thread(warm, base, 1, 1)
            runs = {"idle": lambda: time.sleep(args.idle_s)}
            for name in args.scenarios.split(","):
                scenario = SCENARIOS[name]
                runs[name] = lambda s=scenario: s(base, args.requests, args.sentences)
            for name, work in runs.items():
                lags = await probe.measure(work)
                results[name] = {
                    "samples": len(lags),
                    "p50_ms": percentile(lags, 0.50) * 1000,
                    "p99_ms": percentile(lags, 0.99) * 1000,
                    "max_ms": max(lags, default=float("nan")) * 1000,
                }
            probing.cancel()
            server.should_exit = True
            await serving
    finally:
        await close_engines(engines)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3, help="requests per scenario, one after another")
    parser.add_argument("--sentences", type=int, default=4, help="long sentences per request")
    parser.add_argument("--tick-ms", type=float, default=5.0)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    print(f"event-loop lag (probe every {args.tick_ms:g} ms) on {machine()}")
    print(f"{'while':<12} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['samples']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: print(f"client thread failed: {a.exc_value!r}", file=sys.stderr)
    raise SystemExit(main())
