"""``capacity.py --listeners``: how many people hear the primary voice without a gap (issue 24).

Stack as ``make up`` runs it: mosquitto, the gateway (tiers ``workers,piper,espeak-ng``: the
offline chain; cache off, so every sentence is synthesized) and Piper workers (``--workers``;
default: what ``up`` starts on this machine, ``sesame_voice.up.default_workers``), heartbeats at
the shipped 500 ms.

A simulated person opens a websocket session and talks: a turn of 2 to 4 sentences, heard at
real-time pace on a playback clock with a 100 ms prebuffer (``clients.stats.Playout``; a gap is
audio that arrives after what came before has finished playing), then a think time of 1 to 3 s,
then the next turn. The N people start one by one across ``--ramp-seconds`` (8 s: about one turn
and its think time, so turns start at the rate they go on at; ``--ramp-seconds 3``, the ramp before
this round, starts N first turns within 3 s: a burst about 2.7 times the steady rate at N=18, in
which the machine is over its capacity for some seconds and second sentences wait behind the
others' first ones: every gap of those runs fell in a step's first 5 s). N rises step by step
until the first gap or fallback (``--all-steps``: every step). Per N: underruns, seconds of gaps,
first-audio p50/p95, the share of sentences spoken by the primary (no fallback event), the stack's
CPU per listener, workers declared dead. Then the largest N with no gap and all-primary, and its
ratio to the engine's own limit: cores divided by the workers' CPU seconds (worker and its Piper
child) per second of speech, measured in the same run.

``--page``: one of the N listeners is the web client in headless Chromium (clients/web, Debian's
chromium through playwright, bench/_web_pages.py), streaming its turns word by word as an LLM
writes them (a word every 150 ms); its player's own underrun count and fallbacks count in the step,
and its seams are shown: chunks after a turn's first that do not end a sentence (the gateway cut
them early for the playback deadline, core/deadline_cut.py).

``--greedy K``: the greedy case, one step of ``--polite`` polite listeners beside K sessions that
speak back to back (each new turn as soon as the last one's audio arrived, never listening).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench._stack import Stack, machine
from broker.audio import AudioFrame
from clients.loadtest import DEFAULT_TEXTS
from clients.stats import Playout, Summary, table
from sesame_voice.capacity import default_workers
from tests.support.procfs import PARENT, every_process, ticks_to_seconds

PREBUFFER_S = 0.1
MIN_GAP_S = 0.02  # shorter silences are not heard as a gap (they still count in seconds of gaps)
RAMP_S = 8.0  # the N people start across this: about one turn and its think time
HEARD = (
    "(t) => window.sesame.stats.turns > t && window.sesame.stats.playerState === 'idle'"  # a turn heard out
)
SENTENCES = [s for text in DEFAULT_TEXTS for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


@dataclass(slots=True)
class TurnResult:
    ttfa_s: float | None = None
    sentences: int = 0
    fell_back: set[int] = field(default_factory=set)
    underruns: int = 0
    gap_s: float = 0.0
    audio_s: float = 0.0
    error: str | None = None
    # each gap heard: (the sentence it fell in, 1 = the turn's first; seconds after the turn was
    # sent; seconds of silence): where a gap falls tells its cause (a first sentence's stream, a
    # later sentence late)
    gaps: list[tuple[int, float, float]] = field(default_factory=list)


async def person(ws_url: str, start_at: float, stop_at: float, seed: int, greedy: bool) -> list[TurnResult]:
    """One listener's session until ``stop_at`` (a turn under way is finished)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    turns: list[TurnResult] = []
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    try:
        async with connect(ws_url, open_timeout=30, close_timeout=2, max_size=1 << 22) as ws:
            await ws.recv()  # ready
            while loop.time() < stop_at:
                text = " ".join(rng.sample(SENTENCES, rng.randint(2, 4)))
                turn = TurnResult()
                turns.append(turn)
                play = Playout(prebuffer_s=PREBUFFER_S, min_gap_s=MIN_GAP_S)
                sent = loop.time()
                await ws.send(json.dumps({"type": "speak", "text": text}))
                async with asyncio.timeout(60):
                    while True:
                        raw = await ws.recv()
                        now = loop.time()
                        if isinstance(raw, bytes):
                            frame = AudioFrame.from_bytes(raw)
                            turn.ttfa_s = now - sent if turn.ttfa_s is None else turn.ttfa_s
                            played = play.audio(now, frame.samples / frame.sample_rate)
                            if played.gap > MIN_GAP_S:
                                turn.gaps.append((turn.sentences, round(now - sent, 3), round(played.gap, 3)))
                            continue
                        msg = json.loads(raw)
                        if msg["type"] == "sentence_start":
                            turn.sentences += 1
                        elif msg["type"] == "fallback":
                            turn.fell_back.add(int(msg["seq"]))
                        elif msg["type"] == "error":
                            turn.error = str(msg.get("code"))
                        elif msg["type"] == "turn_end":
                            break
                turn.underruns, turn.gap_s, turn.audio_s = play.underruns, play.gap_s, play.audio_s
                if not greedy:
                    heard_at = play.end if play.end is not None else loop.time()
                    await asyncio.sleep(max(0.0, heard_at - loop.time()) + rng.uniform(1.0, 3.0))
    except TimeoutError:
        turns.append(TurnResult(error="timeout"))
    except (OSError, ConnectionClosed) as exc:
        turns.append(TurnResult(error=type(exc).__name__))
    return turns


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants (from /proc)."""
    now = every_process()
    parents = {pid: int(fields[PARENT]) for pid, fields in now.items()}
    cpu = {pid: ticks_to_seconds(fields) for pid, fields in now.items()}
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


@dataclass(slots=True)
class StepResult:
    listeners: int
    greedy: int
    turns: int
    sentences: int
    errors: int
    underruns: int
    gap_s: float
    heard_s: float
    ttfa_p50_ms: float | None
    ttfa_p95_ms: float | None
    primary_share: float
    cpu_per_listener: float  # CPU seconds per second of the whole stack, per polite listener
    worker_cpu_per_speech_s: float  # the workers' CPU seconds per second of primary speech
    workers_declared_dead: int
    page: dict[str, int] | None = None  # --page: the web client's turns, underruns, fallbacks, errors, seams
    # every polite listener's gaps, as TurnResult's
    gaps: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        heard = self.errors == 0 and self.underruns == 0 and self.primary_share == 1.0 and self.turns > 0
        return heard and (self.page is None or (self.page["turns"] > 0 and not self.page["gaps"]))


def summarize(
    n: int, greedy: int, polite: list[list[TurnResult]], all_turns: list[TurnResult], cpu: dict[str, float]
) -> StepResult:
    turns = [t for s in polite for t in s]
    ok = [t for t in turns if t.error is None]
    ttfa = Summary.of(t.ttfa_s for t in ok if t.ttfa_s is not None).to_dict(1000.0)
    sentences = sum(t.sentences for t in all_turns if t.error is None)
    fell = sum(len(t.fell_back) for t in all_turns if t.error is None)
    primary_speech = sum(t.audio_s * (1 - len(t.fell_back) / max(1, t.sentences)) for t in all_turns)
    return StepResult(
        listeners=n,
        greedy=greedy,
        turns=len(ok),
        sentences=sum(t.sentences for t in ok),
        errors=len(turns) - len(ok),
        underruns=sum(t.underruns for t in ok),
        gap_s=round(sum(t.gap_s for t in ok), 2),
        heard_s=round(sum(t.audio_s for t in ok), 1),
        ttfa_p50_ms=ttfa["p50"],
        ttfa_p95_ms=ttfa["p95"],
        primary_share=round(1 - fell / sentences, 3) if sentences else 0.0,
        cpu_per_listener=round(cpu["stack"] / cpu["wall"] / max(1, n), 3),
        worker_cpu_per_speech_s=round(cpu["workers"] / primary_speech, 3) if primary_speech else 0.0,
        workers_declared_dead=int(cpu["dead"]),
        gaps=[g for t in ok for g in t.gaps],
    )


async def page_listener(http_url: str, start_at: float, stop_at: float, seed: int) -> dict[str, int]:
    """The web client as one listener until ``stop_at``: turns of 2 to 4 sentences streamed a word
    every 150 ms, each heard out (``turn_end``, its player idle) before a think time and the next."""
    from bench._web_pages import web_pages

    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    turns, errors = 0, 0
    async with web_pages(http_url, 1, 60) as [web]:
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        while loop.time() < stop_at:
            await web.stream(" ".join(rng.sample(SENTENCES, rng.randint(2, 4))), 0.15)
            await web.page.wait_for_function(HEARD, arg=turns, timeout=60_000)
            turns += 1
            errors += len((await web.take()).failures)
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        stats = await web.page.evaluate("() => ({...window.sesame.stats})")
        chunks = await web.page.evaluate("() => window.sesame.sentences.map((s) => [s.turn, s.text])")
    fallbacks, underruns = int(stats["fallbacks"]), int(stats["underruns"])
    # A turn's later chunk that does not end a sentence: cut early for the playback deadline (the
    # first chunk may be cut by the first-chunk rule): a seam inside a sentence, not a gap.
    firsts = {turn: i for i, (turn, _) in reversed(list(enumerate(chunks)))}
    seams = sum(text[-1:] not in ".!?" and firsts[turn] != i for i, (turn, text) in enumerate(chunks))
    return {"turns": turns, "underruns": underruns, "fallbacks": fallbacks, "errors": errors,
            "gaps": underruns + fallbacks + errors, "seams": seams}  # fmt: skip


def ramp_seconds(ramp_s: float, seconds: float) -> float:
    """How long the N people take to start: ``--ramp-seconds``, at most a quarter of the step."""
    return min(ramp_s, seconds / 4)


def run_step(
    stack: Stack,
    n: int,
    greedy: int,
    seconds: float,
    seed: int,
    *,
    page: bool = False,
    ramp_s: float = RAMP_S,
) -> StepResult:
    roots = [stack.gateway.pid, *(w.pid for w in stack.workers.values())]
    assert stack.broker.proc is not None
    roots.append(stack.broker.proc.pid)
    workers = [w.pid for w in stack.workers.values()]
    dead0 = len(_dead(stack))
    stack0, workers0 = sum(map(tree_cpu, roots)), sum(map(tree_cpu, workers))

    page_result: dict[str, int] | None = None
    others = n - 1 if page else n

    async def go() -> tuple[list[list[TurnResult]], list[list[TurnResult]], float]:
        nonlocal page_result
        loop = asyncio.get_running_loop()
        t0 = loop.time() + (8.0 if page else 0.2)  # the page's browser starts first
        ramp = ramp_seconds(ramp_s, seconds)
        people = [
            person(stack.ws_url, t0 + ramp * i / max(1, n), t0 + seconds, seed + i, False)
            for i in range(others)
        ]
        greedy_people = [person(stack.ws_url, t0, t0 + seconds, seed + 1000 + i, True) for i in range(greedy)]
        web = [page_listener(stack.http_url, t0, t0 + seconds, seed + 500)] if page else []
        results = await asyncio.gather(*people, *greedy_people, *web)
        if page:
            page_result = results[-1]  # type: ignore[assignment]
        heard: list[list[TurnResult]] = results[: others + greedy]  # type: ignore[assignment]
        return heard[:others], heard[others:], loop.time() - t0

    polite, greedy_turns, wall = asyncio.run(go())
    cpu = {
        "stack": sum(map(tree_cpu, roots)) - stack0,
        "workers": sum(map(tree_cpu, workers)) - workers0,
        "wall": wall,
        "dead": float(len(_dead(stack)) - dead0),
    }
    every = [t for s in (*polite, *greedy_turns) for t in s]
    return replace(summarize(n, greedy, polite, every, cpu), page=page_result)


def _dead(stack: Stack) -> list[object]:
    return [e for e in stack.gateway.events() if e.get("event") == "worker_change" and e.get("up") is False]


def report(steps: list[StepResult], workers: int, seconds: float, ramp_s: float) -> None:
    cores = os.cpu_count() or 1
    print(
        f"capacity --listeners: {workers} Piper worker(s), tiers workers,piper,espeak-ng, cache off, "
        f"{seconds:g} s per step, starts across {ramp_seconds(ramp_s, seconds):g} s, "
        f"prebuffer {PREBUFFER_S * 1000:.0f} ms; {machine()}"
    )
    rows = [
        [
            s.listeners,
            s.greedy,
            s.turns,
            s.sentences,
            s.errors,
            s.underruns,
            f"{s.gap_s:.1f}/{s.heard_s:.0f}",
            s.ttfa_p50_ms,
            s.ttfa_p95_ms,
            f"{s.primary_share:.1%}",
            f"{s.cpu_per_listener:.3f}",
            s.workers_declared_dead,
            "-"
            if s.page is None
            else "{turns} turns, {underruns} underruns, {fallbacks} fallbacks, {seams} seams".format(
                **s.page
            ),
        ]
        for s in steps
    ]
    heads = ["N", "greedy", "turns", "sentences", "errors", "underruns", "gap s/heard s"]
    print(
        table([*heads, "TTFA p50 ms", "p95 ms", "primary", "CPU/listener", "declared dead", "web page"], rows)
    )
    per_speech = [s.worker_cpu_per_speech_s for s in steps if s.worker_cpu_per_speech_s > 0]
    cost = sum(per_speech) / len(per_speech) if per_speech else 0.0
    limit = cores / cost if cost else 0.0
    best = max((s.listeners for s in steps if s.clean and not s.greedy), default=0)
    ratio = f"{best / limit:.0%}" if limit else "-"
    print(
        f"largest N with no gap and all-primary: {best}; engine limit {limit:.1f} real-time voices "
        f"({cores} cores / {cost:.3f} CPU s per s of speech); ratio {ratio} (target >= 70%)"
    )


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="capacity.py --listeners", description=__doc__)
    ap.add_argument("--listeners", action="store_true")
    ap.add_argument("--steps", default="2,4,6,8,10,12,14,16")
    ap.add_argument("--step-seconds", type=float, default=40.0)
    ap.add_argument("--workers", type=int, default=default_workers("piper", os.cpu_count() or 1))
    ap.add_argument("--all-steps", action="store_true", help="do not stop at the first gap or fallback")
    ap.add_argument("--greedy", type=int, default=0, help="greedy sessions beside --polite listeners")
    ap.add_argument("--polite", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--page", action="store_true", help="one of the N listeners is the web client")
    ap.add_argument("--ramp-seconds", type=float, default=RAMP_S, help="the N people start across this")
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    steps = [1] if a.smoke else [int(x) for x in a.steps.split(",")]
    seconds = 4.0 if a.smoke else a.step_seconds
    env = {"SESAME_TIERS": "workers,piper,espeak-ng", "SESAME_CACHE_ENABLED": "false"}
    results: list[StepResult] = []
    with Stack(env) as stack:
        for i in range(a.workers):
            stack.start_worker(
                f"piper-{i + 1}", "piper", SESAME_HEARTBEAT_INTERVAL_MS="500", SESAME_WORKERS=str(a.workers)
            )
        if a.greedy:
            results.append(run_step(stack, a.polite, 0, seconds, a.seed))
            results.append(run_step(stack, a.polite, a.greedy, seconds, a.seed))
        else:
            for n in steps:
                step = run_step(stack, n, 0, seconds, a.seed, page=a.page, ramp_s=a.ramp_seconds)
                results.append(step)
                sys.stderr.write(f"  N={n}: {asdict(step)}\n")
                if not step.clean and not a.all_steps:
                    break
    report(results, a.workers, seconds, a.ramp_seconds)
    if a.json_out:
        a.json_out.write_text(json.dumps([asdict(s) for s in results], indent=1) + "\n")
    return 0
