"""What polite clients get while another client misbehaves (issue 19, "fair share").

A real stack on loopback: mosquitto, the gateway process, one espeak-ng worker as the primary
voice (tier ``workers``) and the in-process espeak-ng tier as its fallback. Each client has its own
address (``X-Forwarded-For`` from loopback, as nginx sends it). Scenarios, one after another:

* ``alone``: ten polite clients at once, each speaks one sentence: their figure alone;
* ``greedy``: the same ten beside one greedy client holding 16 sessions of long texts;
* ``bodies``: the ten beside 20 connections sending 10 MB bodies and 20 trickling bodies;
* ``flood``: a client (from 8 addresses) opens ``SESAME_MAX_SESSIONS`` sessions, each starts
  speaking, and drops every socket without a close frame; then three polite clients, one after
  another.

For each, the polite clients' time to first audio (p50, max), how many were spoken by the primary
voice (no ``fallback``; ``ready`` at once), and what refused them. Before/after: run this same file
against the code before the change (``git archive <commit> | tar -x -C /tmp/before``, copy this
file into its ``bench/``). Figures in docs/benchmarks.md were taken on a shared, loaded 2-core
machine.

    .venv/bin/python bench/abuse.py [--scenarios alone,greedy,bodies,flood] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from dataclasses import dataclass, field
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
    ready_s: float | None = None
    refused: str | None = None
    ttfa_s: float | None = None
    engine: str | None = None
    fell_back: bool = False


@dataclass
class Result:
    polite: list[Polite] = field(default_factory=list)
    note: str = ""

    def row(self) -> dict[str, object]:
        heard = sorted(p.ttfa_s for p in self.polite if p.ttfa_s is not None)
        primary = sum(1 for p in self.polite if p.ttfa_s is not None and not p.fell_back)
        refused = [p.refused for p in self.polite if p.refused]
        ready = [p.ready_s for p in self.polite if p.ready_s is not None]
        return {
            "clients": len(self.polite),
            "ready_max_ms": round(max(ready) * 1000, 1) if ready else None,
            "ttfa_p50_ms": round(heard[len(heard) // 2] * 1000, 1) if heard else None,
            "ttfa_max_ms": round(heard[-1] * 1000, 1) if heard else None,
            "primary_voice": primary,
            "refused": refused,
            "note": self.note,
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
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "speak", "text": SENTENCE}))
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    out.ttfa_s = out.ttfa_s or time.perf_counter() - sent
                    continue
                event = json.loads(msg)
                if event["type"] == "sentence_start":
                    out.engine = event["engine"]
                elif event["type"] == "fallback":
                    out.fell_back = True
                elif event["type"] == "turn_end":
                    return out
    except (ConnectionClosed, InvalidStatus, OSError) as exc:
        out.refused = out.refused or type(exc).__name__
    except TimeoutError:
        out.refused = "timeout"
    return out


async def ten_polite(url: str) -> list[Polite]:
    return list(await asyncio.gather(*(polite(url, f"10.1.0.{i + 1}") for i in range(POLITE))))


async def greedy_sessions(url: str, n: int, stop: asyncio.Event) -> None:
    async def one(i: int) -> None:
        try:
            async with connect(url, additional_headers=headers("10.6.6.6")) as ws:
                if json.loads(await ws.recv())["type"] != "ready":
                    return
                await ws.send(json.dumps({"type": "speak", "text": LONG}))
                while not stop.is_set():
                    async with asyncio.timeout(0.5):
                        await ws.recv()
        except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
            return

    await asyncio.gather(*(one(i) for i in range(n)))


async def scenario_greedy(stack: Stack) -> Result:
    stop = asyncio.Event()
    greedy = asyncio.create_task(greedy_sessions(stack.ws_url, 16, stop))
    await asyncio.sleep(1.0)  # the greedy client's sessions have filled what they can
    result = Result(await ten_polite(stack.ws_url), "beside 16 greedy sessions of 12 sentences each")
    stop.set()
    await greedy
    return result


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


async def run(scenarios: list[str]) -> dict[str, dict[str, object]]:
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_CACHE_PRELOAD": "false",
        "SESAME_MAX_SESSIONS": str(MAX_SESSIONS),
    }
    results: dict[str, dict[str, object]] = {}
    for name in scenarios:  # a fresh stack each: one scenario's leftovers do not weigh on the next
        with Stack(env, start_timeout=60) as stack:
            stack.start_worker("w1", engine="espeak-ng")
            await polite(stack.ws_url, "10.0.0.1")  # warm: the worker's first job, the fallback's probe
            match name:
                case "alone":
                    result = Result(await ten_polite(stack.ws_url), "ten polite clients, nobody else")
                case "greedy":
                    result = await scenario_greedy(stack)
                case "bodies":
                    result = await scenario_bodies(stack)
                case "flood":
                    result = await scenario_flood(stack)
                case _:
                    raise SystemExit(f"unknown scenario {name!r}")
            results[name] = result.row()
            print(name, json.dumps(results[name]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--scenarios", default="alone,greedy,bodies,flood")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.scenarios.split(",")))
    print(f"\npolite clients beside an abusive one, on {machine()}")
    columns = ("clients", "ready max", "TTFA p50", "TTFA max", "primary")
    print(f"{'scenario':<8} " + " ".join(f"{c:>9}" for c in columns) + "  note")
    for name, r in results.items():
        cells = (r["clients"], r["ready_max_ms"], r["ttfa_p50_ms"], r["ttfa_max_ms"], r["primary_voice"])
        note = f"{r['refused'] or ''} {r['note']}".strip()
        print(f"{name:<8} " + " ".join(f"{c!s:>9}" for c in cells) + f"  {note}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
