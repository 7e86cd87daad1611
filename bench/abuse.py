"""What polite clients get while another client misbehaves (issue 19, "fair share").

A real stack on loopback: mosquitto, the gateway process, one espeak-ng worker as the primary
voice (tier ``workers``) and the in-process espeak-ng tier as its fallback. Each client has its own
address (``X-Forwarded-For`` from loopback, as nginx sends it). Scenarios, one after another:

* ``alone``: ten polite clients at once, each speaks one sentence: their figure alone;
* ``greedy``: the same ten beside one greedy client holding 16 sessions of long texts (a process
  of its own, as a client elsewhere would be: its reading does not delay the polite clients');
* ``bodies``: the ten beside 20 connections sending 10 MB bodies and 20 trickling bodies;
* ``flood``: a client (from 8 addresses) opens ``SESAME_MAX_SESSIONS`` sessions, each starts
  speaking, and drops every socket without a close frame; then three polite clients, one after
  another.

For each, the polite clients' time to first audio (p50, max), how many first sentences the primary
voice spoke (no ``fallback`` for the turn's first sentence; ``first primary``) and how many whole
turns (``turn primary``), why any fell back, and what refused them.

``alone`` and ``greedy`` together are one comparison, so they share one stack and alternate round
by round (``--rounds`` of each: alone, greedy, alone, ...), and a load on the machine weighs on
both alike; the figure is the ratio of the pooled medians (greedy / alone) with a bootstrap 95%
interval, beside each round pair's own ratio (their spread). Before/after: run this same file
against the code before the change (``git archive <commit> | tar -x -C /tmp/before``, copy this
file into its ``bench/``). Figures in docs/benchmarks.md were taken on a shared, loaded 2-core
machine.

    .venv/bin/python bench/abuse.py [--scenarios alone,greedy,bodies,flood] [--rounds 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import time
from asyncio.subprocess import PIPE
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench._stack import Stack, machine

POLITE = 10
MAX_SESSIONS = 40
SENTENCE = "Thank you for calling, how can I help you today?"
LONG = " ".join(f"This is sentence number {i} of a very long answer that goes on and on." for i in range(12))


@dataclass
class Polite:
    session_id: str | None = None
    ready_s: float | None = None
    refused: str | None = None
    ttfa_s: float | None = None
    engine: str | None = None
    fallbacks: dict[int, str] = field(default_factory=dict)  # seq -> reason

    @property
    def first_primary(self) -> bool:  # the turn's first sentence (seq 0 of a new session)
        return self.ttfa_s is not None and 0 not in self.fallbacks


@dataclass
class Result:
    polite: list[Polite] = field(default_factory=list)
    note: str = ""

    def heard(self) -> list[float]:
        return sorted(p.ttfa_s for p in self.polite if p.ttfa_s is not None)

    def row(self) -> dict[str, object]:
        heard = self.heard()
        refused = [p.refused for p in self.polite if p.refused]
        ready = [p.ready_s for p in self.polite if p.ready_s is not None]
        reasons: dict[str, int] = {}
        for p in self.polite:
            for seq, why in p.fallbacks.items():
                key = f"{'first' if seq == 0 else 'later'}:{why}"
                reasons[key] = reasons.get(key, 0) + 1
        return {
            "clients": len(self.polite),
            "ready_max_ms": round(max(ready) * 1000, 1) if ready else None,
            "ttfa_p50_ms": round(statistics.median(heard) * 1000, 1) if heard else None,
            "ttfa_max_ms": round(heard[-1] * 1000, 1) if heard else None,
            "primary_voice": sum(1 for p in self.polite if p.first_primary),
            "turn_primary": sum(1 for p in self.polite if p.ttfa_s is not None and not p.fallbacks),
            "fallbacks": reasons,
            "refused": refused,
            "note": self.note,
        }


def ratio_figure(alone: list[Result], greedy: list[Result], seed: int = 19) -> dict[str, object]:
    """Greedy over alone: the ratio of the pooled medians, its bootstrap 95% interval (resampling
    each side's first-audio times), and each round pair's own ratio of medians (the spread)."""
    a = [t for r in alone for t in r.heard()]
    g = [t for r in greedy for t in r.heard()]
    if not a or not g:
        return {"ratio_p50": None}
    rng = random.Random(seed)
    boot = sorted(
        statistics.median(rng.choices(g, k=len(g))) / statistics.median(rng.choices(a, k=len(a)))
        for _ in range(2000)
    )
    pairs = [
        round(statistics.median(gr.heard()) / statistics.median(ar.heard()), 2)
        for ar, gr in zip(alone, greedy, strict=False)
        if ar.heard() and gr.heard()
    ]
    return {
        "samples": [len(a), len(g)],
        "alone_p50_ms": round(statistics.median(a) * 1000, 1),
        "greedy_p50_ms": round(statistics.median(g) * 1000, 1),
        "ratio_p50": round(statistics.median(g) / statistics.median(a), 2),
        "ratio_ci95": [round(boot[int(0.025 * len(boot))], 2), round(boot[int(0.975 * len(boot))], 2)],
        "pair_ratios": pairs,
    }


def headers(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def polite(url: str, address: str, within_s: float = 60.0) -> Polite:
    out = Polite()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(within_s), connect(url, additional_headers=headers(address)) as ws:
            first = json.loads(await ws.recv())
            if first["type"] != "ready":
                out.refused = first.get("code", first["type"])
                return out
            out.ready_s = time.perf_counter() - start
            out.session_id = first["session_id"]
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "speak", "text": SENTENCE}))
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    out.ttfa_s = out.ttfa_s or time.perf_counter() - sent
                    continue
                event = json.loads(msg)
                if event["type"] == "sentence_start":
                    out.engine = out.engine or event["engine"]
                elif event["type"] == "fallback":
                    out.fallbacks.setdefault(event["seq"], event["reason"])
                elif event["type"] == "turn_end":
                    return out
    except (ConnectionClosed, InvalidStatus, OSError) as exc:
        out.refused = out.refused or type(exc).__name__
    except TimeoutError:
        out.refused = "timeout"
    return out


async def ten_polite(url: str, round_no: int = 0, clients: int = POLITE) -> list[Polite]:
    addresses = [f"10.1.{round_no % 250}.{i + 1}" for i in range(clients)]
    return list(await asyncio.gather(*(polite(url, a) for a in addresses)))


async def greedy_sessions(url: str, n: int, stop: asyncio.Event, opened: asyncio.Event) -> None:
    """``n`` sessions from one address, each speaking 12 long sentences, reading what comes (a
    session whose sentences wait for the client's quota hears nothing for a while: it stays)."""
    ready = 0

    async def one(i: int) -> None:
        nonlocal ready
        try:
            async with connect(url, additional_headers=headers("10.6.6.6")) as ws:
                if json.loads(await ws.recv())["type"] == "ready":
                    await ws.send(json.dumps({"type": "speak", "text": LONG}))
                ready += 1
                if ready == n:
                    opened.set()
                while not stop.is_set():
                    try:
                        async with asyncio.timeout(0.5):
                            await ws.recv()
                    except TimeoutError:
                        continue
        except (ConnectionClosed, InvalidStatus, OSError):
            return

    await asyncio.gather(*(one(i) for i in range(n)))


async def greedy_client(url: str) -> None:
    """``--greedy-client URL``: the greedy client as a process of its own (a client elsewhere on the
    network; it does not share the polite clients' event loop): says ``open`` once its sessions
    are, and stops when its stdin closes."""
    stop, opened = asyncio.Event(), asyncio.Event()
    sessions = asyncio.create_task(greedy_sessions(url, 16, stop, opened))
    await opened.wait()
    print("open", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    stop.set()
    await sessions


async def scenario_greedy(stack: Stack, round_no: int = 0, clients: int = POLITE) -> Result:
    greedy = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--greedy-client", stack.ws_url, stdin=PIPE, stdout=PIPE
    )
    assert greedy.stdin is not None and greedy.stdout is not None
    async with asyncio.timeout(60):
        await greedy.stdout.readline()  # "open": its sessions are open and speaking
    await asyncio.sleep(1.0)  # the greedy client's sessions have filled what they can
    polite = await ten_polite(stack.ws_url, round_no, clients)
    greedy.stdin.close()
    await greedy.wait()
    return Result(polite, "beside 16 greedy sessions of 12 sentences each")


async def scenario_fair(stack: Stack, rounds: int, clients: int) -> tuple[list[Result], list[Result]]:
    """Alone and greedy alternated in one stack, ``rounds`` of each; a pause between rounds lets the
    worker's queue and the last round's sessions go."""
    alone: list[Result] = []
    greedy: list[Result] = []
    for i in range(rounds):
        alone.append(Result(await ten_polite(stack.ws_url, 2 * i, clients), "nobody else"))
        await asyncio.sleep(1.0)
        greedy.append(await scenario_greedy(stack, 2 * i + 1, clients))
        await asyncio.sleep(1.0)
    return alone, greedy


def others_ahead(worker: list[dict[str, object]], polite: set[str], asked: set[str]) -> list[int]:
    """From the worker's log: for the first job of each polite session in ``asked``, how many jobs
    of other (the greedy client's) sessions the worker ran while it waited, the one running when
    it came included. The worker's order, not the machine's speed: one is what a job that cannot
    be stopped costs."""
    accepted: dict[str, tuple[str, float]] = {}
    runs: list[tuple[float, float, str]] = []  # (start, end, session)
    for e in worker:
        when = datetime.fromisoformat(str(e.get("timestamp"))).timestamp()
        if e.get("event") == "job_accepted":
            accepted[str(e["job_id"])] = (str(e["session_id"]), when)
        elif e.get("event") == "job_done" and str(e["job_id"]) in accepted:
            runs.append((when - float(str(e["synth_s"])), when, accepted[str(e["job_id"])][0]))
    first: dict[str, tuple[float, float]] = {}
    for start, _, session in sorted(runs):
        if session in asked and session not in first:
            first[session] = (next(t for s, t in accepted.values() if s == session), start)
    return [
        sum(1 for s, e, who in runs if who not in polite and s < began and e > came)
        for came, began in first.values()
    ]


def big_body(port: int, size: int) -> str:
    """POST /tts with a body of ``size`` bytes sent as fast as possible: what the server said."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"POST /tts HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            answer = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as exc:
        answer = type(exc).__name__
    return f"{answer} after {time.perf_counter() - start:.1f} s"


def slow_body(port: int, seconds: float) -> str:
    """POST /tts whose body comes one byte a second: how long the server kept it."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds + 30) as s:
            head = b"POST /tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            s.sendall(head + b"Content-Length: 1000\r\n\r\n")
            s.settimeout(1.0)
            while time.perf_counter() - start < seconds:
                try:
                    status = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                    return f"{status} after {time.perf_counter() - start:.1f} s"
                except TimeoutError:
                    s.sendall(b" ")
    except OSError as exc:
        return f"{type(exc).__name__} after {time.perf_counter() - start:.1f} s"
    return f"still open after {seconds:.0f} s"


async def scenario_bodies(stack: Stack) -> Result:
    big = [asyncio.to_thread(big_body, stack.port, 10_000_000) for _ in range(20)]
    slow = [asyncio.to_thread(slow_body, stack.port, 25.0) for _ in range(20)]
    attack = asyncio.gather(*big, *slow)
    await asyncio.sleep(0.5)
    result = Result(await ten_polite(stack.ws_url))
    answers = await attack
    result.note = f"10 MB bodies: {answers[0]}; trickled bodies: {answers[-1]}"
    return result


async def scenario_flood(stack: Stack) -> Result:
    start = time.perf_counter()
    sockets = []
    opened = 0
    for i in range(MAX_SESSIONS):
        try:
            # Spread over addresses, so the per-address quota does not stop it before the limit.
            ws = await connect(stack.ws_url, additional_headers=headers(f"10.9.9.{i % 8 + 1}"))
            if json.loads(await ws.recv())["type"] == "ready":
                await ws.send(json.dumps({"type": "speak", "text": LONG}))
                opened += 1
            sockets.append(ws)
        except (ConnectionClosed, InvalidStatus, OSError):
            break
    for ws in sockets:
        ws.transport.abort()  # no close frame: each session is kept for a resume
    took = time.perf_counter() - start
    result = Result([await polite(stack.ws_url, f"10.2.0.{i + 1}") for i in range(3)])
    result.note = f"{opened} sessions opened from 8 addresses, then all dropped, in {took:.1f} s"
    return result


async def run(scenarios: list[str], rounds: int, clients: int) -> dict[str, dict[str, object]]:
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_CACHE_PRELOAD": "false",
        "SESAME_MAX_SESSIONS": str(MAX_SESSIONS),
    }
    results: dict[str, dict[str, object]] = {}
    fair = "alone" in scenarios and "greedy" in scenarios
    steps = ["fair"] if fair else []
    steps += [n for n in scenarios if not (fair and n in ("alone", "greedy"))]
    for name in steps:  # a fresh stack each: one scenario's leftovers do not weigh on the next
        with Stack(env, start_timeout=60) as stack:
            stack.start_worker("w1", engine="espeak-ng")
            await polite(stack.ws_url, "10.0.0.1")  # warm: the worker's first job, the fallback's probe
            match name:
                case "fair":
                    alone, greedy = await scenario_fair(stack, rounds, clients)
                    results["alone"] = pooled(alone, f"{clients} polite clients, nobody else")
                    results["greedy"] = pooled(greedy, "beside 16 greedy sessions of 12 sentences each")
                    results["ratio"] = ratio_figure(alone, greedy)
                    ids = {p.session_id for r in alone + greedy for p in r.polite if p.session_id}
                    beside = {p.session_id for r in greedy for p in r.polite if p.session_id}
                    ahead = others_ahead(stack.workers["w1"].events(), ids, beside)
                    results["ratio"]["greedy_jobs_ahead"] = {n: ahead.count(n) for n in sorted(set(ahead))}
                    print("ratio", json.dumps(results["ratio"]), flush=True)
                    continue
                case "alone":
                    result = Result(await ten_polite(stack.ws_url, 0, clients), "polite clients, nobody else")
                case "greedy":
                    result = await scenario_greedy(stack, 0, clients)
                case "bodies":
                    result = await scenario_bodies(stack)
                case "flood":
                    result = await scenario_flood(stack)
                case _:
                    raise SystemExit(f"unknown scenario {name!r}")
            results[name] = result.row()
            print(name, json.dumps(results[name]), flush=True)
    return results


def pooled(rounds: list[Result], note: str) -> dict[str, object]:
    row = Result([p for r in rounds for p in r.polite], f"{len(rounds)} rounds: {note}").row()
    row["round_p50_ms"] = [round(statistics.median(r.heard()) * 1000) for r in rounds if r.heard()]
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--scenarios", default="alone,greedy,bodies,flood")
    parser.add_argument("--rounds", type=int, default=8, help="alone/greedy rounds of each, alternated")
    parser.add_argument("--clients", type=int, default=POLITE, help="polite clients per round")
    parser.add_argument("--smoke", action="store_true", help="alone,greedy: one round of 3 clients")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--greedy-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.greedy_client:
        asyncio.run(greedy_client(args.greedy_client))
        return 0
    if args.smoke:
        args.scenarios, args.rounds, args.clients = "alone,greedy", 1, 3
    results = asyncio.run(run(args.scenarios.split(","), args.rounds, args.clients))
    print(f"\nabuse: polite clients beside an abusive one, on {machine()}")
    columns = ("clients", "ready max", "TTFA p50", "TTFA max", "1st prim.", "turn prim.")
    heading = f"{'scenario':<8} " + " ".join(f"{c:>10}" for c in columns) + "  note"
    print(heading)
    print("-" * len(heading))
    for name, r in results.items():
        if name == "ratio":
            continue
        keys = ("clients", "ready_max_ms", "ttfa_p50_ms", "ttfa_max_ms", "primary_voice", "turn_primary")
        cells = [r[k] for k in keys]
        note = f"{r['refused'] or ''} {r['fallbacks'] or ''} {r['note']}".strip()
        print(f"{name:<8} " + " ".join(f"{c!s:>10}" for c in cells) + f"  {note}")
    if (ratio := results.get("ratio")) is not None:
        print(
            f"greedy/alone TTFA p50: {ratio['ratio_p50']}x (95% CI {ratio.get('ratio_ci95')}, "
            f"{ratio.get('samples')} samples); per round pair: {ratio.get('pair_ratios')}"
        )
        ahead = ratio.get("greedy_jobs_ahead")
        print(f"greedy jobs run while a polite first sentence waited (jobs: sentences): {ahead}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
