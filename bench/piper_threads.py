"""Piper's onnxruntime threads: one session fast, many sessions fair (issues 20 and 24).

The engine alone, no gateway: ``--workers`` Piper children (``synth_worker.piper_process``, as a
worker starts them) of the packaged voice, for each thread configuration in ``--configs``:
``auto`` (the default rule, ``synth_worker.piper_threads.piper_threads(cores, workers)``: every
core alone, the cores divided among the workers beside another speaker) or a fixed count N (what
SESAME_PIPER_THREADS=N gives). Configurations alternate within the run, in reverse order every
other round, so a machine whose load changes meets each of them alike.

* **idle**: the 20 short sentences of ``ttfa_vs_wyoming.py`` one at a time (round robin over the
  children): first clause's audio (ms from the request), and the children's CPU ms per sentence.
* **loaded**: ``--sessions`` at once, each speaking ``--per-session`` sentences in turn, each to the
  least busy child (as the gateway dispatches): first audio p50/p90, sentences per second, CPU ms
  per sentence (capacity: the fewer, the more listeners the cores carry).

    .venv/bin/python bench/piper_threads.py [--configs auto,1,2] [--workers N] [--sessions 10]
                                            [--per-session 6] [--rounds 2] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import machine
from bench.ttfa_vs_wyoming import SENTENCES
from clients.stats import percentile, table
from synth_worker.engine import CancelToken
from synth_worker.piper_process import PiperChild, packaged_model
from synth_worker.piper_threads import PiperThreads, machine_cores, one_core_workers, piper_threads
from tests.support.procfs import cpu_seconds

HEADER = "piper threads: first audio and CPU per sentence, idle and loaded, by thread configuration"


@dataclass(slots=True)
class Figures:
    idle_ms: list[float] = field(default_factory=list)
    idle_cpu_s: float = 0.0
    loaded_ms: list[float] = field(default_factory=list)
    loaded_cpu_s: float = 0.0
    loaded_wall_s: float = 0.0


def threads_of(config: str, workers: int) -> PiperThreads:
    if config == "auto":
        return piper_threads(machine_cores(), workers)
    return PiperThreads.fixed(int(config))


def children_cpu_s(children: list[PiperChild]) -> float:
    """User + system CPU seconds of the running children (from /proc: they are not reaped yet)."""
    total = 0.0
    for child in children:
        proc = child._proc  # a bench reading the child's pid
        assert proc is not None
        total += cpu_seconds(proc.pid)
    return total


async def first_audio_s(child: PiperChild, text: str) -> float:
    start = time.perf_counter()
    first: float | None = None
    async for _ in child.say(text, CancelToken(), 60.0):
        if first is None:
            first = time.perf_counter() - start
    assert first is not None
    return first


async def measure(
    threads: PiperThreads, workers: int, texts: tuple[str, ...], load: tuple[int, int], fig: Figures
) -> None:
    sessions, per = load
    children = [PiperChild(packaged_model(), threads, 120.0) for _ in range(workers)]
    try:
        for child in children:
            await child.start()
        await first_audio_s(children[0], texts[0])  # warm
        cpu0 = children_cpu_s(children)
        for i, text in enumerate(texts):
            fig.idle_ms.append(1000 * await first_audio_s(children[i % workers], text))
        fig.idle_cpu_s += children_cpu_s(children) - cpu0
        busy = [0] * workers

        async def talk(k: int) -> None:
            for j in range(per):
                pick = min(range(workers), key=busy.__getitem__)
                busy[pick] += 1
                try:
                    text = texts[(3 * k + j) % len(texts)]
                    fig.loaded_ms.append(1000 * await first_audio_s(children[pick], text))
                finally:
                    busy[pick] -= 1

        cpu0, wall0 = children_cpu_s(children), time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for k in range(sessions):
                tg.create_task(talk(k))
        fig.loaded_wall_s += time.perf_counter() - wall0
        fig.loaded_cpu_s += children_cpu_s(children) - cpu0
    finally:
        for child in children:
            await child.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--configs", default="auto,1,2", help="comma-separated: auto or a thread count")
    ap.add_argument("--workers", type=int, default=one_core_workers(machine_cores()), help="as up starts")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--per-session", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="auto only, 4 sentences, 2 sessions, 1 round")
    a = ap.parse_args(argv)
    texts = SENTENCES[:4] if a.smoke else SENTENCES
    sessions, per, rounds = (2, 2, 1) if a.smoke else (a.sessions, a.per_session, a.rounds)
    configs = ["auto"] if a.smoke else [c.strip() for c in a.configs.split(",") if c.strip()]
    figures = {c: Figures() for c in configs}
    for r in range(rounds):
        for c in configs if r % 2 == 0 else configs[::-1]:
            asyncio.run(measure(threads_of(c, a.workers), a.workers, texts, (sessions, per), figures[c]))
    rows = []
    for c, f in figures.items():
        t = threads_of(c, a.workers)
        rows.append(
            [
                f"{c} ({t.alone} alone / {t.shared} shared)",
                f"{percentile(sorted(f.idle_ms), 50):.1f}",
                f"{1000 * f.idle_cpu_s / len(f.idle_ms):.0f}",
                f"{percentile(sorted(f.loaded_ms), 50):.1f}",
                f"{percentile(sorted(f.loaded_ms), 90):.1f}",
                f"{len(f.loaded_ms) / f.loaded_wall_s:.2f}",
                f"{1000 * f.loaded_cpu_s / len(f.loaded_ms):.0f}",
            ]
        )
    print(HEADER)
    print(
        f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {a.workers} Piper children; "
        f"{len(texts)} sentences; loaded: {sessions} sessions x {per} sentences; {rounds} round(s)"
    )
    heads = ["threads", "idle first audio p50 ms", "idle CPU ms/sentence", "loaded p50 ms", "loaded p90 ms"]
    print(table([*heads, "loaded sentences/s", "loaded CPU ms/sentence"], rows))
    if a.json_out:
        out = {"machine": machine(), "load_avg_1m": os.getloadavg()[0], "workers": a.workers}
        out["configs"] = {c: asdict(f) for c, f in figures.items()}
        a.json_out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
