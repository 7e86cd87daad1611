"""Chaos: open-loop websocket turns while faults are injected on a schedule; does the voice heal?

Starts ``sesame-voice up`` (broker, ``--workers`` workers of ``--engine``: Bark on the random-weight
dev checkpoint, Piper on a copy of the packaged voice, or espeak-ng; gateway; local tiers workers ->
espeak-ng (workers only for espeak-ng workers, so that a fallback is told apart); cache off so that
every sentence is synthesized), then
opens one websocket session per turn at ``--rate`` turns/s (open loop: on schedule, whether or not
the server keeps up), each a two-sentence ``speak``. Every ``--fault-every`` seconds it injects the
next fault of the cycle:

    sigkill     SIGKILL a worker                       (up restarts it)
    sigstop     SIGSTOP a worker                       (up finds it hung and replaces it)
    broker      SIGKILL the broker                     (up restarts it on the same port)
    reload      SIGHUP to up                           (a rolling reload)
    model       move the model directory away, SIGKILL a worker, put the directory back 5 s
                later                                   (the new worker heals without a restart;
                                                         espeak-ng has no model: a SIGKILL)

Per sentence: ``spoken`` (by which engine), ``texted`` (an error frame carrying its text) or
``lost`` (the turn ended or broke without either). Per fault: the time to heal, from the fault
until every worker heartbeats ``ready`` again *and* the workers' engine has spoken a sentence started
after the fault (and, for a reload, ``up`` said ``reload_done``: every worker and the gateway
replaced); the heal is the moment the last of these held (a ``reload_done`` counts when its line
was read, however often the run looks). Also the time each reload took and its timeline (from
``up``'s log: each successor spawned, its imports done, its model loaded, ready; each old process
told to drain, stopped; ``RELOAD_EVENTS``), and the RSS of each process from 20 s into its life and
of all of them together from the first fault on (``/proc``; up's children come from its state
file). Also: the longest silence a listener heard inside a turn (playout clock, as the load tester).

Output: a table on stdout, ``--json OUT`` and ``--svg OUT`` (faults on a timeline against the workers'
engine's share of the sentences started in each 5 s window). After the schedule, turns go on until every
fault has healed or ``--heal-timeout`` passes. ``--faults`` picks the cycle (``--faults reload``: a
reload every ``--fault-every`` seconds, to time reloads alone).

    .venv/bin/python bench/chaos.py --engine piper --duration 600 --rate 2 --fault-every 30 \\
        --workers 2 --json chaos.json --svg chaos.svg
    .venv/bin/python bench/chaos.py --smoke      # ~60 s, 0.5 turns/s, 1 worker, each fault once
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import Proc, machine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from broker import topics
from broker.audio import AudioFrame
from broker.credentials import Credentials
from broker.errors import ProtocolError
from broker.launcher import free_port
from broker.link import MqttLink
from broker.messages import Heartbeat, decode_worker_message
from broker.settings import MqttUrl
from clients.stats import Playout

FAULTS = ("sigkill", "sigstop", "broker", "reload", "model")
# A reload's timeline (up's log, its children's lines included): where its seconds go, step by step.
RELOAD_EVENTS = {
    "reload_started": "surge",
    "child_restarted": "pid",  # a successor spawned
    "worker_starting": "",  # its Python is up (imports done)
    "model_loaded": "load_s",
    "model_warmed_up": "warm_up_s",
    "worker_ready": "",
    "gateway_listening": "",
    "child_retiring": "pid",  # SIGTERM to an old one: it drains
    "worker_draining": "queue_depth",
    "gateway_draining": "sessions",
    "gateway_drained": "",
    "worker_stopped": "",  # its last line; the step ends when up sees it exit
    "reload_step": "step",
    "reload_done": "seconds",
}
PROCESS_WARM_S = 20.0  # a process's RSS counts from this long after it was first seen
# Short sentences (about a second of audio each), as a conversational assistant speaks: Bark's
# cost per sentence then fits this machine often enough for "Bark speaks again" to be measurable.
TEXTS = (
    ("Sure, I can do that.", "Here it is."),
    ("Good question.", "Let me check."),
    ("Yes.", "That works for me."),
)


@dataclass
class Sentence:
    turn: int
    seq: int
    started_at: float  # when the turn was scheduled (seconds since the run began)
    outcome: str = "lost"  # spoken | texted | lost
    engine: str | None = None
    start_at: float | None = None  # when its sentence_start arrived
    end_at: float | None = None  # when its sentence_end arrived (spoken)
    # What the client saw of its turn (shared by the turn's sentences): a lost one explains itself.
    trace: TurnTrace | None = None


@dataclass
class TurnTrace:
    session: str | None = None  # the gateway's session id, from its `ready`
    seen: list[str] = field(default_factory=list)  # "12.34 sentence_start[0] engine=piper", ...
    ended: str = "running"  # turn_end, or how the turn broke (close code, timeout, error)


@dataclass
class Fault:
    kind: str
    at: float
    target: str = ""
    healed_at: float | None = None

    @property
    def heal_s(self) -> float | None:
        return None if self.healed_at is None else round(self.healed_at - self.at, 2)


@dataclass
class Run:
    t0: float
    workers: int
    engine: str
    sentences: list[Sentence] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    silences: list[float] = field(default_factory=list)
    ready: dict[str, float] = field(default_factory=dict)  # worker id -> last ready heartbeat
    interval: dict[str, float] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    totals: list[tuple[float, float]] = field(default_factory=list)  # (t, MB of every process)
    reloads_done: list[tuple[float, bool]] = field(default_factory=list)  # (t, ok) of reload_done
    up_lines_read: int = 0  # how far up's log has been searched for reload_done

    def now(self) -> float:
        return time.monotonic() - self.t0

    def ready_count(self, now: float, since: float) -> int:
        """Workers heard `ready` lately by a heartbeat sent well after ``since``: one frozen at
        ``since`` stops beating, so its beats from before the fault do not count."""
        return sum(
            1
            for w, at in self.ready.items()
            if now - at <= 3 * self.interval.get(w, 0.5) and at > since + 3 * self.interval.get(w, 0.5)
        )

    def check_heal(self, now: float | None = None) -> None:
        """Mark each fault healed whose conditions all hold at ``now`` (default: this moment; up's
        ``reload_done`` is checked at the time its line was read, not when the run next looked)."""
        now = self.now() if now is None else now
        for fault in self.faults:
            if (
                fault.healed_at is None
                and fault.at < now
                and self.ready_count(now, fault.at) >= self.workers
                # a reload has healed when up says it is done (every process replaced)
                and (
                    fault.kind != "reload" or any(fault.at < at <= now and ok for at, ok in self.reloads_done)
                )
                and any(
                    s.engine == self.engine
                    and s.start_at is not None
                    and s.start_at > fault.at
                    and s.end_at is not None
                    and s.end_at <= now
                    for s in self.sentences
                )
            ):
                fault.healed_at = now


async def one_turn(run: Run, url: str, turn: int, timeout_s: float) -> None:
    texts = TEXTS[turn % len(TEXTS)]
    trace = TurnTrace()
    mine = [Sentence(turn, i, run.now(), trace=trace) for i in range(len(texts))]
    run.sentences.extend(mine)
    loop = asyncio.get_running_loop()
    play = Playout(prebuffer_s=0.0)
    try:
        async with asyncio.timeout(timeout_s), connect(url, open_timeout=None, close_timeout=1) as ws:
            hello = json.loads(await ws.recv())
            trace.session = hello.get("session_id")
            trace.seen.append(f"{run.now():.2f} {hello.get('type')}")
            await ws.send(json.dumps({"type": "speak", "text": " ".join(texts)}))
            while True:
                raw = await ws.recv()
                if isinstance(raw, bytes):
                    frame = AudioFrame.from_bytes(raw)
                    play.audio(loop.time(), frame.samples / frame.sample_rate)
                    continue
                msg = json.loads(raw)
                seq = msg.get("seq")
                s = mine[seq] if isinstance(seq, int) and 0 <= seq < len(mine) else None
                trace.seen.append(_seen(run.now(), msg))
                match msg.get("type"):
                    case "sentence_start" if s is not None:
                        s.engine, s.start_at = str(msg.get("engine")), run.now()
                    case "sentence_end" if s is not None:
                        s.outcome, s.end_at = "spoken", run.now()
                        run.check_heal()
                    case "error" if s is not None and msg.get("text"):
                        s.outcome, s.engine = "texted", None
                    case "turn_end":
                        trace.ended = "turn_end"
                        break
    except ConnectionClosed as exc:  # whatever did not arrive stays lost
        trace.ended = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        trace.ended += f" {exc.rcvd.reason}" if exc.rcvd and exc.rcvd.reason else ""
    except TimeoutError:
        trace.ended = f"no turn_end within {timeout_s} s"
    except (OSError, InvalidHandshake, ProtocolError) as exc:
        trace.ended = f"{type(exc).__name__}: {exc}"
    if play.started:
        run.silences.append(play.gap_s)


def _seen(now: float, msg: dict[str, object]) -> str:
    """One line of what the client saw: the message type, its seq and what tells it apart."""
    seq = f"[{msg['seq']}]" if isinstance(msg.get("seq"), int) else ""
    extra = " ".join(f"{k}={msg[k]}" for k in ("engine", "code", "reason") if msg.get(k) is not None)
    return f"{now:.2f} {msg.get('type')}{seq} {extra}".rstrip()


def unspoken_traces(run: Run, log: list[tuple[float, dict[str, object]]]) -> list[dict[str, object]]:
    """Each sentence not spoken (lost, or only texted): its session, the fault nearest in time,
    what the client saw, how the turn ended, and the gateway's log lines of its session (every job
    of it carries its id)."""
    traces = []
    for s in run.sentences:
        if s.outcome == "spoken" or s.trace is None:
            continue
        near = min(run.faults, key=lambda f: abs(f.at - s.started_at), default=None)
        lines = [
            f"{at - run.t0:.2f} "
            + " ".join(f"{k}={v}" for k, v in e.items() if k not in ("session_id", "timestamp"))
            for at, e in log
            if s.trace.session is not None and e.get("session_id") == s.trace.session
        ]
        traces.append(
            {
                "outcome": s.outcome,
                "turn": s.turn,
                "seq": s.seq,
                "started_at_s": round(s.started_at, 2),
                "session": s.trace.session,
                "nearest_fault": None
                if near is None
                else {"kind": near.kind, "at_s": round(near.at, 2), "target": near.target},
                "client_saw": s.trace.seen,
                "ended": s.trace.ended,
                "gateway_log": lines[:60],
            }
        )
    return traces


class Target:
    """The ``up`` under test: its pids (from the supervisor's state file) and its model dir."""

    def __init__(self, up: Proc, state_path: Path, model: Path | None) -> None:
        self.up, self.state_path, self.model = up, state_path, model

    def children(self) -> list[dict[str, object]]:
        try:
            return list(json.loads(self.state_path.read_text())["children"])
        except (OSError, ValueError, KeyError):
            return []

    def pid(self, role: str, nth: int = 0) -> tuple[str, int] | None:
        found = [c for c in self.children() if c["role"] == role and c["pid"]]
        if not found:
            return None
        c = found[nth % len(found)]
        return str(c["name"]), int(c["pid"])  # type: ignore[call-overload]

    def pids(self) -> dict[str, int]:
        out = {"up": self.up.pid}
        out.update({str(c["name"]): int(c["pid"]) for c in self.children() if c["pid"]})  # type: ignore[call-overload]
        return out


async def inject(kind: str, target: Target, run: Run, n: int) -> Fault:
    fault = Fault(kind, run.now())
    if kind == "reload":
        os.kill(target.up.pid, signal.SIGHUP)
        fault.target = "up"
        return fault
    victim = target.pid("broker") if kind == "broker" else target.pid("worker", n)
    if victim is None:
        fault.target = "none"
        return fault
    fault.target = victim[0]
    if kind == "model" and target.model is not None:
        model = target.model
        away = model.with_name(model.name + ".away")
        model.rename(away)
        os.kill(victim[1], signal.SIGKILL)

        async def restore() -> None:
            await asyncio.sleep(5.0)  # the schedule of the fault: the directory is gone 5 s
            away.rename(model)

        asyncio.get_running_loop().create_task(restore(), name="restore-model")
    else:
        os.kill(victim[1], signal.SIGSTOP if kind == "sigstop" else signal.SIGKILL)
    return fault


def sample_rss(run: Run, target: Target) -> None:
    now = run.now()
    total = 0.0
    for name, pid in target.pids().items():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    mb = int(line.split()[1]) / 1024.0
                    run.rss.setdefault(f"{name}:{pid}", []).append((now, mb))
                    total += mb
        except OSError:
            continue
    run.totals.append((now, total))


def follow_reloads(run: Run, target: Target) -> None:
    """up's reload_done lines, on the run's clock: each at the time its line was read (the heal is
    judged then, so how often this runs does not add to a reload's heal time)."""
    lines, read_at = target.up.lines, target.up.read_at
    end = min(len(lines), len(read_at))
    for at, line in zip(read_at[run.up_lines_read : end], lines[run.up_lines_read : end], strict=True):
        if '"reload_done"' in line and line.startswith("{"):
            run.reloads_done.append((at - run.t0, json.loads(line).get("ok") is True))
            run.check_heal(at - run.t0)
    run.up_lines_read = end


async def heartbeats(run: Run, url: MqttUrl) -> MqttLink:
    async def on_message(topic: str, payload: bytes) -> None:
        try:
            beat = decode_worker_message(payload)
        except ProtocolError:
            return
        if isinstance(beat, Heartbeat):
            run.interval[beat.worker_id] = beat.interval_s
            if beat.state == "ready":
                run.ready[beat.worker_id] = run.now()
                run.check_heal()
            else:
                run.ready.pop(beat.worker_id, None)

    link = MqttLink(
        url, f"chaos-{os.getpid()}", subscriptions=[(topics.ALL_HEARTBEATS, 0)], on_message=on_message
    )
    await link.__aenter__()
    return link


async def drive(args: argparse.Namespace, target: Target, ws_url: str, broker: MqttUrl) -> Run:
    run = Run(time.monotonic(), args.workers, args.engine)
    link = await heartbeats(run, broker)
    turns: set[asyncio.Task[None]] = set()
    try:
        next_fault = args.fault_every
        turn = 0
        period = 1.0 / args.rate
        while True:
            now = run.now()
            schedule_over = now >= args.duration
            healed = all(f.healed_at is not None for f in run.faults)
            if schedule_over and (healed or now >= args.duration + args.heal_timeout):
                break
            if not schedule_over and now >= next_fault:
                kind = args.faults[len(run.faults) % len(args.faults)]
                run.faults.append(await inject(kind, target, run, len(run.faults)))
                print(f"  {now:7.1f}s  fault {kind} -> {run.faults[-1].target}", flush=True)
                next_fault += args.fault_every
            task = asyncio.create_task(one_turn(run, ws_url, turn, args.turn_timeout), name=f"turn-{turn}")
            turns.add(task)
            task.add_done_callback(turns.discard)
            if turn % max(1, int(args.rate)) == 0:
                sample_rss(run, target)
                follow_reloads(run, target)
            turn += 1
            await asyncio.sleep(max(0.0, turn * period - run.now()))  # the open-loop schedule
        if turns:
            await asyncio.wait(turns, timeout=args.turn_timeout + 5)
        follow_reloads(run, target)
    finally:
        await link.close()
    return run


def report(
    run: Run, args: argparse.Namespace, log: list[tuple[float, dict[str, object]]] | None = None
) -> dict[str, object]:
    outcomes = Counter(s.outcome for s in run.sentences)
    engines = Counter(s.engine for s in run.sentences if s.outcome == "spoken")
    main = run.engine
    total = len(run.sentences)
    spoken = outcomes["spoken"]
    rss = {}
    for key, series in run.rss.items():
        # from 20 s into each process's life (a model loads in its first seconds) to its last sample
        warm = [(t, mb) for t, mb in series if t >= series[0][0] + PROCESS_WARM_S]
        if len(warm) < 2:
            continue
        first, last = warm[0][1], warm[-1][1]
        rss[key] = {
            "lived_s": round(warm[-1][0] - warm[0][0], 1),
            "first_mb": round(first, 1),
            "last_mb": round(last, 1),
            "max_mb": round(max(mb for _, mb in warm), 1),
            "growth_pct": round(100.0 * (last - first) / first, 1) if first else None,
            # every 10th sample of its warm life (about 10 s): whether a growth goes on or levels off
            "series_mb": [
                (round(t, 1), round(mb, 2))
                for i, (t, mb) in enumerate(warm)
                if i % 10 == 0 or i == len(warm) - 1
            ],
        }
    # the verdict: growth of every process that lived at least a minute past its warm-up
    long_lived = [r["growth_pct"] for r in rss.values() if r["lived_s"] >= 60 and r["growth_pct"] is not None]
    steps = [(at - run.t0, str(e.get("step"))) for at, e in (log or []) if e.get("event") == "reload_step"]
    reloads = [
        {
            "at_s": round(f.at, 2),
            "done_s": round(done - f.at, 2),
            "ok": ok,
            # where the time went: up's own steps (a new process ready, an old one gone)
            "steps": [f"{t - f.at:.2f} {text}" for t, text in steps if f.at <= t <= done],
            # what listeners heard meanwhile: the workers' engine's share of the sentences begun
            "engine_share": _share(
                [x for x in run.sentences if x.start_at and f.at <= x.start_at <= done], main
            ),
            "timeline": reload_timeline(log or [], run.t0, f.at, done),
        }
        for f in run.faults
        if f.kind == "reload"
        for done, ok in [next(((t, k) for t, k in run.reloads_done if t > f.at), (float("nan"), False))]
    ]
    last = [s for s in run.sentences if s.outcome == "spoken"][-80:]
    return {
        "machine": machine(),
        "config": {
            k: getattr(args, k)
            for k in ("engine", "duration", "rate", "fault_every", "workers", "heal_timeout", "faults")
        },
        "sentences": total,
        "spoken": spoken,
        "texted": outcomes["texted"],
        "lost": outcomes["lost"],
        "spoken_pct": round(100.0 * spoken / total, 3) if total else None,
        "engines": dict(engines),
        "engine_pct": round(100.0 * engines[main] / spoken, 1) if spoken else None,
        "engine_of_last_80": sum(1 for s in last if s.engine == main),
        "faults": [
            {"kind": f.kind, "at_s": round(f.at, 2), "target": f.target, "heal_s": f.heal_s}
            for f in run.faults
        ],
        "all_healed": all(f.healed_at is not None for f in run.faults),
        "longest_silence_s": round(max(run.silences, default=0.0), 3),
        "rss": rss,
        "rss_max_growth_pct": max(long_lived, default=None),
        "stack_mb": [(round(t, 1), round(mb, 1)) for t, mb in run.totals],
        "reloads": reloads,
        "unspoken_traces": unspoken_traces(run, log or []),
        "timeline": timeline(run, main),
    }


def reload_timeline(
    log: list[tuple[float, dict[str, object]]], t0: float, at: float, done: float
) -> list[str]:
    """up's log from a SIGHUP to its reload_done: each successor spawned, up, loaded, ready; each
    old one told to drain, drained, stopped; seconds after the SIGHUP."""
    lines = []
    for when, e in log:
        t = when - t0 - at
        event = str(e.get("event"))
        if event not in RELOAD_EVENTS or not (-0.5 <= t <= done - at + 0.5):
            continue
        who = e.get("worker_id") or e.get("child") or ("gateway" if "gateway" in event else "")
        key = RELOAD_EVENTS[event]
        parts = [f"{t:6.2f}", event, str(who)]
        if key == "step":
            parts.append(str(e.get("step")))
        elif key and e.get(key) is not None:
            parts.append(f"{key}={e[key]}")
        lines.append(" ".join(p for p in parts if p))
    return lines


def _share(sentences: list[Sentence], engine: str) -> float | None:
    return round(sum(s.engine == engine for s in sentences) / len(sentences), 3) if sentences else None


def timeline(run: Run, engine: str, window: float = 5.0) -> list[dict[str, float]]:
    buckets: dict[int, Counter[str]] = {}
    for s in run.sentences:
        if s.start_at is not None:
            buckets.setdefault(int(s.start_at // window), Counter())[s.engine or "text"] += 1
    return [
        {"t": b * window, "share": round(c[engine] / sum(c.values()), 3), "n": sum(c.values())}
        for b, c in sorted(buckets.items())
    ]


def svg(rep: dict[str, object], width: int = 900, height: int = 260) -> str:
    points = rep["timeline"]
    faults = rep["faults"]
    assert isinstance(points, list) and isinstance(faults, list)
    end = max([p["t"] + 5 for p in points] + [f["at_s"] + (f["heal_s"] or 0) for f in faults] + [1.0])
    x = lambda t: 40 + (width - 60) * t / end  # noqa: E731
    y = lambda share: 20 + (height - 60) * (1 - share)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="40" y1="{y(0)}" x2="{width - 20}" y2="{y(0)}" stroke="#888"/>',
        f'<line x1="40" y1="{y(1)}" x2="40" y2="{y(0)}" stroke="#888"/>',
        f'<text x="4" y="{y(1) + 4}">100%</text><text x="14" y="{y(0) + 4}">0%</text>',
        f'<text x="{width / 2 - 220}" y="{height - 8}">seconds; line: {rep["config"]["engine"]} share'  # type: ignore[index]
        " of sentences (5 s windows); red: faults, green: until healed</text>",
    ]
    for f in faults:
        parts.append(f'<line x1="{x(f["at_s"])}" y1="{y(1)}" x2="{x(f["at_s"])}" y2="{y(0)}" stroke="red"/>')
        parts.append(f'<text x="{x(f["at_s"]) + 2}" y="{y(1) + 10}" fill="red">{f["kind"]}</text>')
        if f["heal_s"] is not None:
            healed = f["at_s"] + f["heal_s"]
            span = max(1.0, x(healed) - x(f["at_s"]))
            parts.append(f'<rect x="{x(f["at_s"])}" y="{y(0) + 2}" width="{span}" height="6" fill="green"/>')
    path = " ".join(f"{x(p['t'] + 2.5):.1f},{y(p['share']):.1f}" for p in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def render(rep: dict[str, object]) -> str:
    lines = [
        "chaos: faults under open-loop websocket turns",
        f"machine: {rep['machine']}; config {rep['config']}",
        "",
        "sentences  spoken  texted  lost  spoken%  engine%  engine of last 80  longest silence (s)",
        f"{rep['sentences']:>9}  {rep['spoken']:>6}  {rep['texted']:>6}  {rep['lost']:>4}  "
        f"{rep['spoken_pct']!s:>7}  {rep['engine_pct']!s:>7}  {rep['engine_of_last_80']:>17}  "
        f"{rep['longest_silence_s']:>8}",
        f"engines: {rep['engines']}",
        "",
        "fault     at (s)  target           heal (s)",
    ]
    lines += [
        f"{f['kind']:<8}  {f['at_s']:>6}  {f['target']:<15}  {f['heal_s']!s:>8}"
        for f in rep["faults"]  # type: ignore[attr-defined]
    ]
    lines += ["", "reload at (s)  done after (s)  ok     engine share meanwhile"]
    for r in rep["reloads"]:  # type: ignore[attr-defined]
        lines.append(f"{r['at_s']:>13}  {r['done_s']:>14}  {r['ok']!s:<5}  {r['engine_share']}")
        lines += [f"    {line}" for line in r["timeline"]]
    lines += [
        "",
        f"largest RSS growth of a process that lived >= 60 s past warm-up: {rep['rss_max_growth_pct']} %",
    ]
    for t in rep["unspoken_traces"]:  # type: ignore[attr-defined]
        fault = t["nearest_fault"]
        lines += [
            "",
            f"{str(t['outcome']).upper()}: turn {t['turn']} sentence {t['seq']} at {t['started_at_s']} s, "
            f"session {t['session']}, "
            f"nearest fault {fault}; the turn ended: {t['ended']}",
            "  client saw: " + " | ".join(t["client_saw"]),
        ]
        lines += [f"  gateway: {line}" for line in t["gateway_log"]]
    lines += ["", "process:pid            lived (s)  first MB  last MB  max MB  growth %"]
    for name, r in rep["rss"].items():  # type: ignore[attr-defined]
        lines.append(
            f"{name:<21}  {r['lived_s']:>9}  {r['first_mb']:>8}  {r['last_mb']:>7}  {r['max_mb']:>6}  "
            f"{r['growth_pct']!s:>8}"
        )
    return "\n".join(lines)


def start_up(args: argparse.Namespace, tmp: Path) -> tuple[Proc, Target, str, MqttUrl]:
    env = {"SESAME_ENGINE": args.engine, "SESAME_TIERS": "workers,espeak-ng"}
    model: Path | None = None
    if args.engine == "bark":
        model = tmp / "bark-dev"
        if args.model:
            shutil.copytree(args.model, model)  # a copy: the model fault moves it around
        else:
            from synth_worker.devmodel import build_dev_model

            build_dev_model(model)
        env["SESAME_MODEL"] = str(model)
    elif args.engine == "piper":
        from synth_worker.piper_process import packaged_model

        voice = packaged_model() if not args.model else None
        onnx = Path(args.model) if args.model else voice.onnx  # type: ignore[union-attr]
        model = tmp / "piper-voice"
        model.mkdir()
        for path in (onnx, onnx.with_name(onnx.name + ".json")):
            shutil.copy(path, model / path.name)  # a copy: the model fault moves it around
        env["SESAME_PIPER_VOICE"] = str(model / onnx.name)
    else:
        env["SESAME_TIERS"] = "workers"  # an espeak-ng fallback would look like the worker's voice
    port = free_port()
    env |= {
        "SESAME_PORT": str(port),
        "SESAME_RUN_DIR": str(tmp),
        "SESAME_MQTT_URL": "",
        "SESAME_SEED": "1",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_RETRY_DELAY": "0",
        "SESAME_MODEL_RETRY_MS": "1000",
    }
    up = Proc(["up", "--workers", str(args.workers)], env, "up")
    started = up.wait_event("up_started", 60)
    for i in range(1, args.workers + 1):
        up.wait_for(
            lambda e, i=i: e.get("event") == "worker_ready" and e.get("worker_id") == f"worker-{i}",  # type: ignore[misc]
            300,
            f"worker-{i} ready",
        )
    # Heartbeats are read as `monitor`, with the credentials `up` made (0600, never on a command line).
    broker = Credentials.from_client_options(Path(str(started["credentials"])) / "clients" / "monitor")
    return up, Target(up, tmp / f"supervisor-{port}.json", model), f"ws://127.0.0.1:{port}/ws", broker


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of faults and turns")
    p.add_argument("--rate", type=float, default=2.0, help="turns per second (open loop)")
    p.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    p.add_argument(
        "--engine", choices=("piper", "bark", "espeak-ng"), default="piper", help="the workers' engine"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--faults",
        type=lambda v: tuple(f.strip() for f in v.split(",") if f.strip()),
        default=FAULTS,
        help=f"the cycle of faults, comma-separated (default {','.join(FAULTS)})",
    )
    p.add_argument(
        "--heal-timeout", type=float, default=60.0, help="after the schedule, wait this long to heal"
    )
    p.add_argument("--turn-timeout", type=float, default=60.0)
    p.add_argument(
        "--model",
        help="bark: a checkpoint dir to copy (default: build the dev checkpoint); piper: an .onnx voice "
        "to copy (default: the packaged voice)",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--svg", type=Path)
    p.add_argument("--smoke", action="store_true", help="60 s, 0.5 turns/s, a fault every 11 s, 1 worker")
    args = p.parse_args(argv)
    if not args.faults or set(args.faults) - set(FAULTS):
        p.error(f"--faults: a comma-separated list of {', '.join(FAULTS)}")
    if args.smoke:
        args.duration, args.rate, args.fault_every, args.workers = 60.0, 0.5, 11.0, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="sesame-chaos-") as tmp:
        up, target, ws_url, broker = start_up(args, Path(tmp))
        try:
            run = asyncio.run(drive(args, target, ws_url, broker))
        finally:
            up.stop(60)
    rep = report(run, args, up.timed_events())
    print(render(rep))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))
    if args.svg:
        args.svg.write_text(svg(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
