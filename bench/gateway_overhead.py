"""What the gateway adds to the time to first audio, and what the whole serving path adds.

Three paths in one run, on the same sentences, each sentence spoken on all three in an order that
cycles through the six orders. The gateway is sent the whole sentence; the direct and worker paths
speak what the gateway's first job speaks (``first_job_text``: its first-chunk rule makes most of
these sentences' first clause a job of its own; until 2026-12-05 they spoke the whole sentence,
~1.5 ms more espeak-ng time, and the gateway's addition read ~1.4 ms low):

* **direct**: ``synth_worker.espeak.EspeakEngine`` called in this process, on an asyncio loop of its
  own thread as the worker runs it: request -> first chunk;
* **worker**: the same espeak-ng worker process driven straight over MQTT by this script
  (``bench/_worker_direct.py``: the gateway's MQTT client code and broker user, the worker's real
  job protocol, topics and payloads, the same mosquitto): job made -> first audio frame read. This
  is the serving path without the gateway: two MQTT hops and the worker;
* **gateway**: a websocket client -> gateway -> MQTT -> the same worker -> MQTT -> gateway ->
  websocket: ``speak`` sent -> first audio frame received (before decoding). The gateway runs with
  ``SESAME_TIERS=workers`` (no in-process fallback) and ``SESAME_CACHE_ENABLED=false`` (every
  sentence is synthesized); broker and MQTT clients as shipped (TCP_NODELAY on).

Reported, each as medians of the paths and as the median (p90, p99) of per-sentence differences:
**the gateway's addition** = gateway - worker (the websocket both ways and everything the gateway
process does: read, segment, schedule, publish, read the audio, write the frame: issue 20's
"the gateway adds at most 1 ms median", shown met only when the upper end of the median's 95%
interval is: espeak-ng's jitter moves a run's median by ~0.2 ms); **the whole path** = gateway -
direct (the plan's "< 5 ms median, < 20 ms p99"); and worker - direct (the MQTT hops and the worker).

The websocket turns go through a pool of listening sessions (``bench/_listening.py``): each turn is
a first sentence on a session whose earlier audio has played out, so the gateway's lookahead
(issue 24) never holds it. Every measured turn of every path starts after ``--gap-ms`` of idle, and
the pool is large enough that no gateway turn waits longer for a session (the count is printed): a
process woken after idle on a small VM is far slower than one woken back to back, and until
2026-12-05 only the gateway's turns (waiting for a session) started idle, ~0.9 ms of its reading.
This process runs on uvloop, as the gateway does: the bench's MQTT client is then the gateway's
own client code on the gateway's loop. The stack's processes each run in a session of their own,
as ``up`` starts them (``tests/support/localstack.py``): Linux's autogroups then schedule them as in
production; until 2026-12-06 they shared this process's session, and the addition read ~0.45 ms high.

Variants: ``shipped`` (session events published on MQTT, as in production) and ``noevents``
(``SESAME_PUBLISH_SESSION_EVENTS=false``: what publishing those copies costs).

    .venv/bin/python bench/gateway_overhead.py [--sentences 120] [--variants shipped,noevents]
                                               [--sessions 32] [--gap-ms 50] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench._listening import ListeningSessions
from bench._stack import Stack, machine
from bench._worker_direct import WorkerDirect
from broker.settings import MqttUrl
from clients.load_requests import DEFAULT_TEXTS
from clients.stats import median_interval, percentile, table
from stream_server.config import GatewayConfig
from stream_server.core.segmenter import segment
from synth_worker.engine import CancelToken, SynthesisRequest
from synth_worker.espeak import EspeakEngine

HEADER = "gateway overhead: time to first audio, espeak-ng direct, its worker over MQTT, through the gateway"
PATHS = ("direct", "worker", "gateway")
T = TypeVar("T")
WORKER = "espeak-1"
VOICE = "maya"


def sentences(n: int) -> list[str]:
    """n distinct single sentences from the load tester's texts."""
    base = [
        s.strip() + ("." if not s.strip().endswith((".", "?", "!")) else "")
        for text in DEFAULT_TEXTS
        for s in text.replace("? ", "?|").replace(". ", ".|").replace("! ", "!|").split("|")
    ]
    out: list[str] = []
    i = 0
    while len(out) < n:
        s = base[i % len(base)]
        round_ = i // len(base)
        out.append(s if round_ == 0 else f"{s[:-1]}, number {round_}{s[-1]}")
        i += 1
    return out


def first_job_text(text: str) -> str:
    """What the gateway's first job for ``text`` speaks: its first-chunk rule makes a first clause
    of 20+ characters a job of its own (most of these sentences), and espeak-ng reaches the first
    audio of a clause ~1.5 ms sooner than of its whole sentence. The direct and worker paths speak
    the same text, so that the rule is not counted as the gateway's speed."""
    config = GatewayConfig.from_env({"SESAME_GATEWAY_ID": "bench"})  # the stack's gateway: defaults
    return segment(text, config.max_length, config.first_chunk_min_chars)[0]


class Direct:
    """EspeakEngine on an asyncio loop of its own thread, as the worker process runs it: uvloop
    spawns espeak-ng ~3x slower than asyncio (libuv forks), so "direct" on this process's uvloop
    would not be the worker's engine. Timed inside that loop: request -> first chunk."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="direct-engine", daemon=True)
        self.thread.start()
        self.engine = EspeakEngine()

    async def load(self) -> None:
        await self._call(self.engine.load())

    def _call(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def first_audio(self, text: str) -> float:
        return await self._call(self._first(text))

    async def _first(self, text: str) -> float:
        start = time.monotonic()
        first = None
        async for _ in self.engine.synthesize(SynthesisRequest(text, VOICE, 24_000), CancelToken()):
            if first is None:
                first = time.monotonic() - start
        assert first is not None
        return first

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass(frozen=True, slots=True)
class Pace:
    """How the turns are spaced: ``gap_s`` of idle before every measured turn of every path, and
    ``sessions`` listening websocket sessions (enough that the gateway's turns never wait for one)."""

    warmup: int
    sessions: int
    gap_s: float


async def measure(stack: Stack, texts: list[str], pace: Pace) -> tuple[dict[str, list[float]], int]:
    """Each path's first-audio seconds, and how many gateway turns waited for a listening session."""
    engine = Direct()
    await engine.load()
    out: dict[str, list[float]] = {p: [] for p in PATHS}
    url: MqttUrl = stack.broker.url_for("gateway")
    try:
        waits = await _measure(engine, stack.ws_url, url, texts, pace, out)
    finally:
        engine.close()
    return out, waits


async def _measure(  # noqa: PLR0917
    engine: Direct,
    ws_url: str,
    url: MqttUrl,
    texts: list[str],
    pace: Pace,
    out: dict[str, list[float]],
) -> int:
    warmup, sessions = pace.warmup, pace.sessions
    async with (
        ListeningSessions(ws_url, sessions, VOICE) as pool,
        WorkerDirect(url, WORKER, VOICE) as worker,
    ):

        async def gateway(text: str) -> float:
            return (await pool.speak(text)).first_audio_s

        first_job = {text: first_job_text(text) for text in texts}  # segmented once, outside the timing

        async def direct(text: str) -> float:
            return await engine.first_audio(first_job[text])

        async def worker_only(text: str) -> float:
            return await worker.first_audio(first_job[text])

        run: dict[str, Callable[[str], Awaitable[float]]] = {
            "direct": direct,
            "worker": worker_only,
            "gateway": gateway,
        }
        for text in texts[:warmup]:
            for path in PATHS:
                await run[path](text)
        orders = itertools.cycle(itertools.permutations(PATHS))
        waits_before = pool.waits
        for text in texts:
            for path in next(orders):
                # Every path's turn starts from the same idle machine. Until 2026-12-05 only the
                # gateway's did (its turns waited for a listening session; the others ran right
                # after a turn, on warm caches and awake cores) and read ~0.9 ms slower for it.
                await asyncio.sleep(pace.gap_s)
                out[path].append(await run[path](text))
        return pool.waits - waits_before


VARIANTS = {
    "shipped": ("as shipped (session events on MQTT)", {}),
    "noevents": ("SESAME_PUBLISH_SESSION_EVENTS=false", {"SESAME_PUBLISH_SESSION_EVENTS": "false"}),
}


@dataclass(frozen=True, slots=True)
class Spread:
    """Median, p90, p99 and max of a set of seconds."""

    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        v = sorted(values)
        return cls(percentile(v, 50), percentile(v, 90), percentile(v, 99), v[-1])

    def ms(self) -> dict[str, float]:
        return {k: round(getattr(self, k) * 1000, 2) for k in ("p50", "p90", "p99", "max")}


DIFFERENCES = {
    "gateway's addition (gateway - worker)": ("gateway", "worker"),
    "whole serving path (gateway - direct)": ("gateway", "direct"),
    "MQTT hops + worker (worker - direct)": ("worker", "direct"),
}


@dataclass(frozen=True, slots=True)
class VariantResult:
    variant: str
    label: str
    times: dict[str, list[float]]
    pool_waits: int  # gateway turns that waited for a listening session (a longer idle than the gap)

    def path(self, name: str) -> Spread:
        return Spread.of(self.times[name])

    def differences(self, a: str, b: str) -> list[float]:
        """Path ``a`` minus path ``b``, sentence by sentence."""
        return [x - y for x, y in zip(self.times[a], self.times[b], strict=True)]

    def paired(self, a: str, b: str) -> Spread:
        return Spread.of(self.differences(a, b))

    @property
    def gateway_added_median(self) -> float:
        return self.paired("gateway", "worker").p50

    @property
    def gateway_added_interval(self) -> tuple[float, float]:
        """95% interval of that median: espeak-ng's own jitter (a forked process per sentence, ~2 ms)
        moves a 300-sentence median by ~0.2 ms from run to run."""
        return median_interval(sorted(self.differences("gateway", "worker")))

    @property
    def gateway_target_met(self) -> bool:
        """The median at most 1 ms, and its interval's upper end too (not one lucky run)."""
        return self.gateway_added_interval[1] <= 0.001

    @property
    def whole(self) -> Spread:
        return self.paired("gateway", "direct")

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "label": self.label,
            "paths_ms": {p: self.path(p).ms() for p in PATHS},
            "paired_ms": {name: self.paired(a, b).ms() for name, (a, b) in DIFFERENCES.items()},
            "gateway_added_median_ms": round(self.gateway_added_median * 1000, 2),
            "gateway_added_interval_ms": [round(v * 1000, 2) for v in self.gateway_added_interval],
            "gateway_target_met": self.gateway_target_met,
            "pool_waits": self.pool_waits,
            "whole_path_target_met": self.whole.p50 < 0.005 and self.whole.p99 < 0.020,
        }


def run_variant(name: str, texts: list[str], pace: Pace) -> VariantResult:
    label, env = VARIANTS[name]
    with Stack({"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false", **env}) as stack:
        stack.start_worker(WORKER, "espeak-ng")
        times, waits = uvloop.run(measure(stack, texts, pace))
    return VariantResult(name, label, times, waits)


def ms(v: float) -> str:
    return f"{v * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--sentences", type=int, default=120, help="per variant, each on all three paths")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)",
    )
    ap.add_argument("--sessions", type=int, default=32, help="listening websocket sessions (default 32)")
    ap.add_argument(
        "--gap-ms", type=float, default=50.0, help="idle before each measured turn of any path (default 50)"
    )
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="10 sentences, as shipped only (for the test suite)")
    a = ap.parse_args(argv)
    n = 10 if a.smoke else a.sentences
    names = ["shipped"] if a.smoke else [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")
    texts = sentences(n)
    pace = Pace(2 if a.smoke else 5, a.sessions, a.gap_ms / 1000)
    results = [run_variant(name, texts, pace) for name in names]
    rows: list[list[object]] = []
    for r in results:
        for p in PATHS:
            s = r.path(p)
            rows.append([f"{r.variant}: {p}", len(r.times[p]), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max)])
        for name, (x, y) in DIFFERENCES.items():
            s = r.paired(x, y)
            spread = map(ms, (s.p50, s.p90, s.p99, s.max))
            rows.append([f"{r.variant}: {name}, paired", len(r.times[x]), *spread])
    print(HEADER)
    print(
        f"machine: {machine()}; {n} sentences per variant, each on the three paths in cycling order; "
        f"gateway SESAME_TIERS=workers, SESAME_CACHE_ENABLED=false, one espeak-ng worker; "
        f"{a.sessions} listening websocket sessions; {a.gap_ms:g} ms idle before every turn; "
        f"gateway turns that waited longer for a session: "
        f"{', '.join(f'{r.variant} {r.pool_waits}' for r in results)}; this process on uvloop"
    )
    print(table(["time to first audio (ms)", "n", "p50", "p90", "p99", "max"], rows))
    for r in results:
        added, (lo, hi), whole = r.gateway_added_median, r.gateway_added_interval, r.whole
        print(
            f"{r.variant} ({r.label}): the gateway adds {ms(added)} ms median, 95% interval "
            f"{ms(lo)}-{ms(hi)} ms (target <= 1 ms, the interval's upper end included: "
            f"{'met' if r.gateway_target_met else 'NOT met'}); the whole serving path adds "
            f"{ms(whole.p50)} ms median, {ms(whole.p99)} ms p99 (target < 5 ms and < 20 ms: "
            f"{'met' if whole.p50 < 0.005 and whole.p99 < 0.020 else 'NOT met'})"
        )
    if a.json_out:
        payload = {"machine": machine(), "sentences": n, "variants": [r.to_dict() for r in results]}
        a.json_out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
