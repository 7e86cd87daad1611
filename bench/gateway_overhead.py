"""What the serving path adds to the time to first audio.

Side by side in one run, on the same sentences, alternating which goes first:

* **direct**: ``synth_worker.espeak.EspeakEngine`` called in this process: request -> first chunk;
* **through the service**: a websocket client -> gateway -> MQTT (mosquitto) -> an espeak-ng
  worker -> MQTT -> gateway -> websocket: ``speak`` sent -> first audio frame received. The gateway
  runs with ``SESAME_TIERS=workers`` (no in-process fallback) and ``SESAME_CACHE_ENABLED=false``
  (every sentence is synthesized), broker and MQTT clients as shipped (TCP_NODELAY on).

Variants: ``shipped`` (session events published on MQTT, as in production) and ``noevents``
(``SESAME_PUBLISH_SESSION_EVENTS=false``: what publishing those copies costs).

Both paths do the same synthesis (espeak-ng produces a sentence's audio in one piece, so "first
chunk" is the synthesis time); the difference is the path's overhead. The plan's target: it adds
< 5 ms at the median and < 20 ms at p99.

    .venv/bin/python bench/gateway_overhead.py [--sentences 120] [--variants shipped,noevents]
                                               [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import ClientConnection, connect

from bench._stack import Stack, machine
from clients import protocol
from clients.load_requests import DEFAULT_TEXTS
from clients.stats import Summary, table
from synth_worker.engine import CancelToken, SynthesisRequest
from synth_worker.espeak import EspeakEngine

HEADER = (
    "gateway overhead: time to first audio, direct espeak-ng vs through websocket + gateway + MQTT + worker"
)


def sentences(n: int) -> list[str]:
    """n distinct single sentences from the load tester's texts."""
    base = [
        s.strip() + ("." if not s.strip().endswith((".", "?", "!")) else "")
        for text in DEFAULT_TEXTS
        for s in text.replace("? ", "?|").replace(". ", ".|").replace("! ", "!|").split("|")
    ]
    out = []
    i = 0
    while len(out) < n:
        s = base[i % len(base)]
        round_ = i // len(base)
        out.append(s if round_ == 0 else f"{s[:-1]}, number {round_}{s[-1]}")
        i += 1
    return out


async def direct(engine: EspeakEngine, text: str) -> float:
    start = time.perf_counter()
    first = None
    async for _ in engine.synthesize(SynthesisRequest(text, "maya", 24_000), CancelToken()):
        if first is None:
            first = time.perf_counter() - start
    assert first is not None
    return first


async def through(ws: ClientConnection, text: str) -> float:
    start = time.perf_counter()
    first = None
    await ws.send(protocol.encode(protocol.Speak(text)))
    while True:
        raw = await ws.recv()
        if isinstance(raw, bytes) and first is None:
            first = time.perf_counter() - start  # timed before decoding, as a player would start
        match protocol.decode(raw):
            case protocol.Error() as error:
                raise RuntimeError(f"gateway error: {error}")
            case protocol.TurnEnd():
                break
    if first is None:
        raise RuntimeError(f"no audio for {text!r}")
    return first


async def measure(ws_url: str, texts: list[str], warmup: int) -> tuple[list[float], list[float]]:
    engine = EspeakEngine()
    await engine.load()
    d: list[float] = []
    p: list[float] = []
    async with connect(ws_url) as ws:
        await ws.recv()  # ready
        for text in texts[:warmup]:
            await direct(engine, text)
            await through(ws, text)
        for i, text in enumerate(texts):
            if i % 2 == 0:
                d.append(await direct(engine, text))
                p.append(await through(ws, text))
            else:
                p.append(await through(ws, text))
                d.append(await direct(engine, text))
    return d, p


VARIANTS = {
    "shipped": ("as shipped (session events on MQTT)", {}),
    "noevents": ("SESAME_PUBLISH_SESSION_EVENTS=false", {"SESAME_PUBLISH_SESSION_EVENTS": "false"}),
}


@dataclass(frozen=True, slots=True)
class VariantResult:
    variant: str
    label: str
    direct: Summary
    through: Summary
    paired: Summary

    @property
    def added_median(self) -> float:
        return self.through.p50 - self.direct.p50

    @property
    def added_p99(self) -> float:
        return self.through.p99 - self.direct.p99

    @property
    def met(self) -> bool:
        return self.added_median < 0.005 and self.added_p99 < 0.020

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "label": self.label,
            "direct_ms": self.direct.to_dict(1000),
            "through_ms": self.through.to_dict(1000),
            "paired_added_ms": self.paired.to_dict(1000),
            "added_median_ms": round(self.added_median * 1000, 2),
            "added_p99_ms": round(self.added_p99 * 1000, 2),
            "target_met": self.met,
        }


def run_variant(name: str, texts: list[str], warmup: int) -> VariantResult:
    label, env = VARIANTS[name]
    with Stack({"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false", **env}) as stack:
        stack.start_worker("espeak-1", "espeak-ng")
        d, p = asyncio.run(measure(stack.ws_url, texts, warmup))
    return VariantResult(
        name, label, Summary.of(d), Summary.of(p), Summary.of(b - a for a, b in zip(d, p, strict=True))
    )


def ms(v: float) -> str:
    return f"{v * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--sentences", type=int, default=120, help="per variant")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)",
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
    results = [run_variant(name, texts, warmup=2 if a.smoke else 5) for name in names]
    rows: list[list[object]] = []
    for r in results:
        d, p, paired = r.direct, r.through, r.paired
        rows.append(
            [f"{r.variant}: direct EspeakEngine", d.count, ms(d.p50), ms(d.p95), ms(d.p99), ms(d.max), ""]
        )
        rows.append(
            [
                f"{r.variant}: through the service",
                p.count,
                ms(p.p50),
                ms(p.p95),
                ms(p.p99),
                ms(p.max),
                f"{p.p50 / d.p50:.2f}x",
            ]
        )
        rows.append(
            [
                f"{r.variant}: added (service - direct)",
                "",
                ms(r.added_median),
                ms(p.p95 - d.p95),
                ms(r.added_p99),
                "",
                "",
            ]
        )
        rows.append(
            [
                f"{r.variant}: added, paired per sentence",
                paired.count,
                ms(paired.p50),
                ms(paired.p95),
                ms(paired.p99),
                ms(paired.max),
                "",
            ]
        )
    print(HEADER)
    print(
        f"machine: {machine()}; {n} sentences per variant, direct and service alternating; "
        "gateway SESAME_TIERS=workers, SESAME_CACHE_ENABLED=false, one espeak-ng worker"
    )
    print(table(["time to first audio (ms)", "n", "p50", "p95", "p99", "max", "ratio p50"], rows))
    for r in results:
        print(
            f"{r.variant} ({r.label}): adds {ms(r.added_median)} ms median, {ms(r.added_p99)} ms p99; "
            f"target < 5 ms median and < 20 ms p99: {'met' if r.met else 'NOT met'}"
        )
    if a.json_out:
        payload = {"machine": machine(), "sentences": n, "variants": [r.to_dict() for r in results]}
        a.json_out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
