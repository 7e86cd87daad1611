"""The local voices side by side (Piper, espeak-ng, Bark on CPU), then how many real-time sessions
Piper workers serve on this machine.

1. **Engines.** Each engine in this process, one request at a time, over the same sentences: time
   to the first chunk (TTFA), real-time factor (wall seconds per second of audio) and CPU seconds per
   second of speech, counting this process and the engine's own child processes (Piper's long-lived
   child, espeak-ng's one process per request). Bark runs the random-weight bark-small checkpoint
   (``bench/_bark.py``) with its semantic tokens capped (random weights never stop by themselves).
2. **Capacity.** mosquitto, a gateway (``SESAME_TIERS=workers``: no fallback tier, so a turn that
   Piper cannot serve counts as an error; cache off: every sentence is synthesized) and N Piper
   workers (one onnxruntime thread each). For each step, S websocket sessions talk continuously
   (``bench/capacity.py``'s sessions: speak a turn, hear it, pause 0.2 s, next turn). A step is real
   time with no errors, no underrun in any turn behind the web client's 100 ms prebuffer, and TTFA
   p99 under ``--ttfa-p99-ms`` (1000: Piper makes a sentence whole, so a turn's first audio waits
   for its whole first sentence, longer for a long one).

    .venv/bin/python bench/local_engines.py [--engines piper,espeak-ng,bark] [--workers 2]
                                            [--steps 2,4,6,8,10,12] [--step-seconds 12] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import REPO, Stack, machine
from bench.capacity import Step, run_step, summarize_step
from clients.stats import table
from synth_worker.engine import CancelToken, SynthesisRequest
from tests.support.procfs import children_of, cpu_seconds

HEADER = "local engines: TTFA, RTF and CPU per second of speech; capacity of Piper workers"
TEXTS = (
    "Hello there, how are you today?",
    "The weather looks fine this afternoon, so we could take a walk along the river.",
    "Yes.",
    "I have booked the table for seven o'clock, and I will send you the address in a minute.",
)


@dataclass(slots=True)
class EngineRow:
    engine: str
    note: str
    load_s: float
    ttfa_ms: list[float]
    wall_s: float
    audio_s: float
    cpu_s: float


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _engine_cpu(engine: Any) -> float:
    """CPU of this process, its reaped children (espeak-ng) and Piper's live children."""
    total = time.process_time() + _children_cpu()
    for child in getattr(engine, "_children", {}).values():
        proc = getattr(child, "_proc", None)
        if proc is not None and proc.returncode is None:
            total += cpu_seconds(proc.pid)
    return total


def build(name: str, bark_dir: Path | None, tokens: int) -> tuple[Any, str]:
    if name == "piper":
        from synth_worker.piper import PiperEngine

        return PiperEngine(threads=1), "packaged en_US-joe-medium, 1 onnxruntime thread"
    if name == "espeak-ng":
        from synth_worker.espeak import EspeakEngine

        return EspeakEngine(), "one process per request"
    from synth_worker.bark.engine import BarkEngine
    from synth_worker.bark.settings import BarkSettings

    assert bark_dir is not None
    settings = BarkSettings(model=str(bark_dir), device="cpu", semantic_max_tokens=tokens, seed=1)
    return BarkEngine(settings), f"bark-small sizes, random weights, {tokens} semantic tokens"


async def measure(name: str, texts: tuple[str, ...], bark_dir: Path | None, tokens: int) -> EngineRow:
    engine, note = build(name, bark_dir, tokens)
    load_s = await engine.load()
    await engine.warm_up()
    ttfa: list[float] = []
    wall = audio = cpu = 0.0
    loop = asyncio.get_running_loop()
    for text in texts:
        cpu0, t0 = _engine_cpu(engine), loop.time()
        first: float | None = None
        samples = 0
        async for chunk in engine.synthesize(SynthesisRequest(text, "maya", 24_000), CancelToken()):
            first = loop.time() - t0 if first is None else first
            samples += len(chunk.samples)
        wall += loop.time() - t0
        cpu += _engine_cpu(engine) - cpu0
        audio += samples / 24_000
        ttfa.append(1000 * (first or 0.0))
    row = EngineRow(name, note, load_s, ttfa, wall, audio, cpu)
    aclose = getattr(engine, "aclose", None)
    if aclose is not None:
        await aclose()
    else:
        engine.close()
    return row


def capacity(
    workers: int, steps: list[int], seconds: float, ttfa_limit_ms: float
) -> list[tuple[Step, float]]:
    out: list[tuple[Step, float]] = []
    with Stack({"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false"}) as stack:
        procs = [stack.start_worker(f"piper-{i + 1}", "piper") for i in range(workers)]
        assert stack.gateway is not None and stack.broker.proc is not None
        gw, mq = stack.gateway.proc.pid, stack.broker.proc.pid
        failures = 0
        for n in steps:
            pids = [p.proc.pid for p in procs] + _grandchildren([p.proc.pid for p in procs])
            w0 = sum(cpu_seconds(p) for p in pids)
            cpu0 = (cpu_seconds(gw), cpu_seconds(mq), time.process_time())
            logs, wall = asyncio.run(run_step(stack.ws_url, n, seconds, ramp_s=min(3.0, seconds / 4)))
            cpu = (cpu_seconds(gw) - cpu0[0], cpu_seconds(mq) - cpu0[1], time.process_time() - cpu0[2])
            workers_cpu = (sum(cpu_seconds(p) for p in pids) - w0) / wall
            step = summarize_step(n, logs, wall, cpu, 0, ttfa_limit_ms=ttfa_limit_ms)
            out.append((step, workers_cpu))
            sys.stderr.write(
                f"  {n} sessions: {step.turns} turns, errors {step.errors}, {step.underrun_turns}\n"
            )
            failures = failures + 1 if not _real_time(step) else 0
            if failures >= 2:
                break
    return out


def _grandchildren(pids: list[int]) -> list[int]:
    """The Piper child processes of the workers (their CPU is the workers' synthesis)."""
    return list(children_of(pids))


def _real_time(step: Step) -> bool:
    p99 = step.ttfa_ms["p99"]
    return (
        step.errors == 0
        and step.turns > 0
        and step.underrun_turns["100ms"] == 0
        and p99 is not None
        and p99 < step.ttfa_limit_ms
    )


def report(
    rows: list[EngineRow], cap: list[tuple[Step, float]], workers: int, seconds: float, ttfa_limit_ms: float
) -> None:
    print(HEADER)
    print(f"machine: {machine()}; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}")
    print(f"texts: {len(TEXTS)} sentences, 3-88 characters, voice maya, 24 kHz; one request at a time")
    print(
        table(
            ["engine", "load s", "ttfa ms (min/max)", "audio s", "RTF", "cpu s per s of speech", "setup"],
            [
                [
                    r.engine,
                    f"{r.load_s:.2f}",
                    f"{min(r.ttfa_ms):.0f}/{max(r.ttfa_ms):.0f}",
                    f"{r.audio_s:.2f}",
                    f"{r.wall_s / r.audio_s:.3f}",
                    f"{r.cpu_s / r.audio_s:.3f}",
                    r.note,
                ]
                for r in rows
            ],
            align="lrrrrrl",
        )
    )
    if not cap:
        return
    print()
    print(
        f"capacity: {workers} Piper workers, gateway tiers 'workers' only, cache off, "
        f"{seconds:.0f} s per step; real time: no error, no underrun behind 100 ms, "
        f"TTFA p99 < {ttfa_limit_ms:.0f} ms"
    )
    print(
        table(
            [
                "sessions",
                "turns",
                "errors",
                "ttfa p50 ms",
                "ttfa p99 ms",
                "underrun turns 0/100ms",
                "cpu workers/gw/broker",
                "real time",
            ],
            [
                [
                    s.sessions,
                    s.turns,
                    s.errors,
                    s.ttfa_ms["p50"],
                    s.ttfa_ms["p99"],
                    f"{s.underrun_turns['0ms']}/{s.underrun_turns['100ms']}",
                    f"{w:.2f}/{s.gateway_cpu:.2f}/{s.broker_cpu:.2f}",
                    "yes" if _real_time(s) else "no",
                ]
                for s, w in cap
            ],
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--engines", default="piper,espeak-ng,bark")
    ap.add_argument("--bark-tokens", type=int, default=24, help="Bark's semantic token cap")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", default="2,4,6,8,10,12")
    ap.add_argument("--step-seconds", type=float, default=12.0)
    ap.add_argument("--ttfa-p99-ms", type=float, default=1000.0, help="a real-time step's TTFA p99 bound")
    ap.add_argument("--smoke", action="store_true", help="Piper and espeak-ng, one sentence, one small step")
    a = ap.parse_args(argv)
    engines = ["piper", "espeak-ng"] if a.smoke else a.engines.split(",")
    texts = TEXTS[:1] if a.smoke else TEXTS
    bark_dir = None
    if "bark" in engines:
        from bench._bark import ensure_checkpoint

        bark_dir, _ = ensure_checkpoint(REPO / ".models" / "bark-small", "bark-small")
    rows = [asyncio.run(measure(name, texts, bark_dir, a.bark_tokens)) for name in engines]
    steps = [2] if a.smoke else [int(x) for x in a.steps.split(",")]
    seconds = 3.0 if a.smoke else a.step_seconds
    workers = 1 if a.smoke else a.workers
    report(rows, capacity(workers, steps, seconds, a.ttfa_p99_ms), workers, seconds, a.ttfa_p99_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
