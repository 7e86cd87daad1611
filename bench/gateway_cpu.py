"""Sessions per core: the gateway process's own CPU while it streams N real-time sessions.

Stack as ``bench/capacity.py`` (mosquitto, the gateway with ``SESAME_TIERS=workers,espeak-ng``, the
sentence cache on, session events published on MQTT as shipped, one espeak-ng worker). The cache is
warmed first, so during a step every sentence is answered from the gateway's memory: what is
measured is the gateway's streaming path (websocket in, session core, frames out, MQTT copies), not
synthesis.

Each step runs N sessions in ``--clients`` separate lean client processes (raw websockets, frames
only sized, not decoded). A session talks continuously in real time: ``speak`` a turn, read it to
``turn_end``, wait until a listener would have heard it (a playout clock from the first frame),
pause 0.2 s, speak the next. After the sessions have started, the gateway's CPU (utime + stime from
``/proc``) is read over a window; **sessions per core = N / (gateway CPU seconds per second)**.
Also printed: audio seconds streamed per second, frames per second, TTFA, underruns (a frame that
came after the audio before it had finished playing) and the MQTT copies the gateway dropped (its
bulk queue full: less work done), so a step that was not real time shows. On a loaded machine the
gateway's loop wakes less often and does more per wake: its CPU per frame falls; compare on a quiet
one.
``--profile DIR`` records the gateway with py-spy over each window (``DIR/N.txt``: collapsed
stacks; ``--top DIR/N.txt`` prints its top functions, by own and by inclusive samples).

    .venv/bin/python bench/gateway_cpu.py [--steps 100,300] [--seconds 20] [--clients 2]
                                          [--gateway-env K=V ...] [--profile DIR] [--json OUT] [--smoke]
    .venv/bin/python bench/gateway_cpu.py --top DIR/300.txt [--lines 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import Stack, machine
from bench.capacity import PAUSE_S, dropped_copies, warm_cache
from broker.audio import HEADER_SIZE
from clients.load_requests import DEFAULT_TEXTS
from clients.stats import Summary, table
from tests.support.procfs import cpu_seconds

HEADER = "gateway cpu: sessions per core, the gateway process's CPU streaming real-time sessions from cache"
TURN_END = '"type":"turn_end"'


async def _session(url: str, start_at: float, stop_at: float, k: int, out: dict[str, list[float]]) -> None:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    try:
        async with connect(url, open_timeout=30, max_size=1 << 22, compression=None) as ws:
            await ws.recv()  # ready
            while loop.time() < stop_at:
                text = DEFAULT_TEXTS[k % len(DEFAULT_TEXTS)]
                k += 1
                sent = loop.time()
                await ws.send(json.dumps({"type": "speak", "text": text}))
                play_end = first = None
                underrun = False
                async with asyncio.timeout(30):
                    while True:
                        raw = await ws.recv()
                        now = loop.time()
                        if isinstance(raw, bytes):
                            seconds = (len(raw) - HEADER_SIZE) / 2 / 24_000
                            if first is None:
                                first = now
                                out["ttfa"].append(now - sent)
                            elif play_end is not None and now > play_end:
                                underrun = True
                            play_end = max(play_end or now, now) + seconds
                            out["audio"].append(seconds)
                        elif TURN_END in raw:
                            break
                        elif '"type":"error"' in raw:
                            out["errors"].append(1)
                out["underruns"].append(1.0 if underrun else 0.0)
                await asyncio.sleep(max(0.0, (play_end or loop.time()) - loop.time()) + PAUSE_S)
    except Exception:  # a bench counts what broke a session (timeout, refused, closed)
        out["errors"].append(1)


async def _clients(url: str, n: int, first: int, ramp_s: float, seconds: float) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    out: dict[str, list[float]] = {"ttfa": [], "audio": [], "underruns": [], "errors": []}
    await asyncio.gather(
        *(_session(url, t0 + ramp_s * i / n, t0 + seconds, first + i, out) for i in range(n))
    )
    return out


def client_main(argv: list[str]) -> int:
    """One client process: ``--client URL N FIRST RAMP SECONDS``; prints its results as JSON."""
    url, n, first, ramp, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3]), float(argv[4])
    print(json.dumps(asyncio.run(_clients(url, n, first, ramp, seconds))))
    return 0


def run_step(stack: Stack, n: int, clients: int, seconds: float, profile: Path | None) -> dict[str, object]:
    ramp = min(3.0, seconds / 4)
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                stack.ws_url,
                str(k),
                str(sum(per[:i])),
                str(ramp),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, k in enumerate(per)
        if k
    ]
    assert stack.gateway is not None
    gw = stack.gateway.proc.pid
    assert stack.broker.proc is not None
    mq = stack.broker.proc.pid
    time.sleep(ramp + 1.5)  # the clients' start, the ramp, and the first turns
    window = seconds - ramp - 2.5
    spy = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [_py_spy(), "record", "-p", str(gw), "-d", str(int(window)), "-r", "200", "-f", "raw",
             "-o", str(profile / f"{n}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    drop0 = dropped_copies(stack.http_url)
    cpu0, mq0, t0 = cpu_seconds(gw), cpu_seconds(mq), time.monotonic()
    time.sleep(window)
    cpu1, mq1, t1 = cpu_seconds(gw), cpu_seconds(mq), time.monotonic()
    merged: dict[str, list[float]] = {"ttfa": [], "audio": [], "underruns": [], "errors": []}
    for p in procs:
        stdout, _ = p.communicate(timeout=seconds + 60)
        for k, v in json.loads(stdout.strip().splitlines()[-1]).items():
            merged[k] += v
    if spy is not None:
        spy.wait(timeout=60)
    cores = (cpu1 - cpu0) / (t1 - t0)
    audio_per_s = sum(merged["audio"]) / seconds
    return {
        "sessions": n,
        "gateway_cores": round(cores, 4),
        "broker_cores": round((mq1 - mq0) / (t1 - t0), 4),
        "sessions_per_core": round(n / cores) if cores > 0 else None,
        "gateway_cpu_ms_per_audio_s": round(1000 * cores / audio_per_s, 3) if audio_per_s else None,
        "audio_s_per_s": round(audio_per_s, 1),
        "frames_per_s": round(len(merged["audio"]) / seconds),
        "turns": len(merged["underruns"]),
        "underrun_turns": int(sum(merged["underruns"])),
        "errors": len(merged["errors"]),
        "mqtt_copies_dropped": dropped_copies(stack.http_url) - drop0,
        "ttfa_ms": Summary.of(merged["ttfa"]).to_dict(1000.0),
    }


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found


def top(path: Path, lines: int) -> str:
    """The functions of a py-spy raw (collapsed) profile with the most samples: own, and inclusive
    (counted once per stack); idle samples (the loop waiting in select/epoll) are shown as such."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r" \((?:.*/)?([^/:]*)(?::\d+)?\)$", r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{path}: {total} samples"]
    for name, counter in (("own", own), ("inclusive", incl)):
        out.append(f"top {lines} by {name} samples:")
        out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in counter.most_common(lines)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--client"]:
        return client_main(args[1:])
    if args[:1] == ["--top"]:
        lines = int(args[3]) if args[2:3] == ["--lines"] else 30
        print(top(Path(args[1]), lines))
        return 0
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--steps", default="100,300", help="concurrent sessions per step")
    ap.add_argument("--seconds", type=float, default=20.0, help="per step")
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--profile", type=Path, help="py-spy the gateway over each window into this folder")
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="one step of 5 sessions for 6 s (the test suite)")
    a = ap.parse_args(args)
    steps = [5] if a.smoke else [int(x) for x in a.steps.split(",")]
    seconds = 6.0 if a.smoke else a.seconds
    extra = dict(kv.split("=", 1) for kv in a.gateway_env)
    results = []
    with Stack({"SESAME_TIERS": "workers,espeak-ng", **extra}) as stack:
        stack.start_worker("espeak-1", "espeak-ng", SESAME_MAX_BATCH="4")
        asyncio.run(warm_cache(stack.ws_url))
        for n in steps:
            results.append(run_step(stack, n, a.clients, seconds, a.profile))
            sys.stderr.write(f"  {json.dumps(results[-1])}\n")
    print(HEADER)
    print(
        f"machine: {machine()}, shared with mosquitto, a worker and {a.clients} client processes; "
        f"{seconds:.0f} s per step; gateway env: {extra or 'as shipped'}"
    )
    rows = [
        [
            r["sessions"],
            f"{r['gateway_cores']:.3f}",
            f"{r['broker_cores']:.3f}",
            r["sessions_per_core"],
            r["gateway_cpu_ms_per_audio_s"],
            r["audio_s_per_s"],
            r["frames_per_s"],
            r["turns"],
            r["underrun_turns"],
            r["errors"],
            r["mqtt_copies_dropped"],
            _ms(r["ttfa_ms"], "p50"),
            _ms(r["ttfa_ms"], "p99"),
        ]
        for r in results
    ]
    heads = ["sessions", "gateway cores", "broker cores", "sessions/core", "cpu ms per audio s"]
    heads += [
        "audio s/s",
        "frames/s",
        "turns",
        "underrun turns",
        "errors",
        "copies dropped",
        "ttfa p50 ms",
        "ttfa p99 ms",
    ]
    print(table(heads, rows))
    if a.json_out:
        a.json_out.write_text(
            json.dumps({"machine": machine(), "gateway_env": extra, "steps": results}, indent=1)
        )
    return 0


def _ms(d: object, key: str) -> str:
    assert isinstance(d, dict)
    v = d.get(key)
    return "-" if v is None else f"{float(v):.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
