"""The load tester's requests: its configuration, its open-loop schedule, and one request of each
mode (``tts``: POST /tts; ``ws``: one websocket turn) with what it measured."""

from __future__ import annotations

import asyncio
import io
import random
import wave
from dataclasses import dataclass, field
from typing import Literal

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from broker.errors import ProtocolError
from clients import protocol
from clients.endpoint import gateway_urls
from clients.stats import Playout

Mode = Literal["tts", "ws"]
Arrivals = Literal["uniform", "poisson"]

DEFAULT_TEXTS = (
    "Good morning. The weather today is mild, with a light breeze from the west.",
    "Thanks for waiting. I found three restaurants nearby that are open late.",
    "Your package left the warehouse this morning. It should arrive on Thursday.",
    "Let me check that for you. The next train to the city leaves at a quarter past six.",
    "That is a great question! Bees can see ultraviolet light, which helps them find nectar.",
    "I have set a timer for ten minutes. Would you like me to remind you about anything else?",
    "The meeting was moved to Friday afternoon. Everyone on the list has been told.",
    "Here is a quick tip. Drink a glass of water before each meal.",
    "Sure. The recipe needs two eggs, a cup of flour, and a pinch of salt.",
    "It is seven degrees outside right now. Later this evening it may rain.",
    "I did not catch that. Could you say it once more, a little more slowly?",
    "The museum opens at nine. Entry is free on the first Sunday of every month.",
)


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str = "http://127.0.0.1:8000"
    mode: Mode = "tts"
    rate: float = 5.0
    duration_s: float = 10.0
    concurrency: int = 64
    texts: tuple[str, ...] = DEFAULT_TEXTS
    voice: str = "maya"
    timeout_s: float = 30.0
    arrivals: Arrivals = "uniform"
    seed: int = 0
    fragment_chars: int = 0  # ws: 0 sends one `speak`; N sends `text` fragments of N chars + `flush`
    prebuffer_s: float = 0.0
    progress: bool = True

    @property
    def ws_url(self) -> str:
        return gateway_urls(self.url).ws

    @property
    def tts_url(self) -> str:
        return gateway_urls(self.url).http + "/tts"


def ws_url(url: str) -> str:
    """The websocket endpoint of the gateway at ``url`` (an http(s) base or a ws(s) URL)."""
    return gateway_urls(url).ws


def schedule(rate: float, duration_s: float, arrivals: Arrivals = "uniform", seed: int = 0) -> list[float]:
    """Start offsets (seconds from the start) of every request in the run."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if arrivals == "uniform":
        n = round(rate * duration_s)
        return [i / rate for i in range(n)]
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        out.append(t)
        t += rng.expovariate(rate)
    return out


# --- one request's outcome ---------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    index: int
    scheduled_s: float  # offset from the run's start
    error: str | None = None  # None: success; else its kind ("timeout", "http_503", "speech_unavailable")
    start_lag_s: float = 0.0  # how late the client actually started it (event loop lag)
    connect_s: float | None = None  # ws: scheduled start -> `ready`
    ttfa_s: float | None = None  # ws: text sent -> first audio; tts: scheduled start -> first byte
    ttfa_sched_s: float | None = None  # scheduled start -> first audio (both modes)
    total_s: float | None = None  # scheduled start -> turn_end / last byte
    audio_s: float = 0.0
    sentences: int = 0
    engines: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    restarts: int = 0
    underruns: int = 0
    gap_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # error codes seen (a session may go on after one)


async def run_tts(
    client: httpx.AsyncClient, cfg: LoadConfig, text: str, out: Outcome, t_sched: float
) -> None:
    loop = asyncio.get_running_loop()
    body = bytearray()
    first: float | None = None
    try:
        async with asyncio.timeout(cfg.timeout_s):
            url = cfg.tts_url
            async with client.stream("POST", url, json={"text": text, "voice": cfg.voice}) as r:
                async for chunk in r.aiter_bytes():
                    if first is None and chunk:
                        first = loop.time()
                    body += chunk
                status, ctype = r.status_code, r.headers.get("content-type", "")
                undelivered = r.headers.get("x-sesame-undelivered-sentences", "0")
    except TimeoutError:
        out.error = "timeout"
        return
    except httpx.ConnectError:
        out.error = "connect_error"
        return
    except httpx.HTTPError as exc:
        out.error = f"http_{type(exc).__name__}"
        return
    end = loop.time()
    out.total_s = end - t_sched
    if first is not None:
        out.ttfa_s = out.ttfa_sched_s = first - t_sched
    if status != 200:
        out.error = f"http_{status}"
        return
    if not ctype.startswith("audio/wav"):
        out.error = "bad_content_type"
        return
    try:
        with wave.open(io.BytesIO(bytes(body))) as w:
            out.audio_s = w.getnframes() / w.getframerate()
    except (wave.Error, EOFError):
        out.error = "bad_wav"
        return
    if undelivered not in ("", "0"):
        out.error = "undelivered_sentences"


async def run_ws(cfg: LoadConfig, text: str, out: Outcome, t_sched: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(cfg.timeout_s):
            async with connect(cfg.ws_url, open_timeout=None, close_timeout=1, max_size=1 << 22) as ws:
                await _expect_ready(ws)
                await ws.send(protocol.encode(protocol.Start(voice=cfg.voice)))
                await _expect_ready(ws)
                out.connect_s = loop.time() - t_sched
                sent = loop.time()
                if cfg.fragment_chars > 0:
                    for i in range(0, len(text), cfg.fragment_chars):
                        await ws.send(protocol.encode(protocol.Text(text[i : i + cfg.fragment_chars])))
                    await ws.send(protocol.encode(protocol.Flush()))
                else:
                    await ws.send(protocol.encode(protocol.Speak(text)))
                await _collect_turn(ws, cfg, out, t_sched, sent)
    except TimeoutError:
        out.error = "timeout"
    except (InvalidStatus, InvalidHandshake):
        out.error = "handshake_failed"
    except OSError:
        out.error = "connect_error"
    except ConnectionClosed as exc:
        out.error = f"closed_{exc.rcvd.code if exc.rcvd else 'abnormal'}"
    except ProtocolError as exc:
        out.error = exc.code


async def _expect_ready(ws: ClientConnection) -> protocol.Ready:
    while (ready := protocol.expect(await ws.recv(), protocol.Ready)) is None:
        pass
    return ready


async def _collect_turn(
    ws: ClientConnection, cfg: LoadConfig, out: Outcome, t_sched: float, sent: float
) -> None:
    loop = asyncio.get_running_loop()
    play = Playout(prebuffer_s=cfg.prebuffer_s)
    while True:
        msg = protocol.decode(await ws.recv())
        now = loop.time()
        match msg:
            case protocol.AudioFrame() as frame:
                if not play.started:
                    out.ttfa_s = now - sent
                    out.ttfa_sched_s = now - t_sched
                play.audio(now, frame.samples / frame.sample_rate)
            case protocol.SentenceStart(engine=engine, restart=restart):
                out.engines.append(engine)
                out.restarts += restart
            case protocol.SentenceEnd():
                out.sentences += 1
            case protocol.Fallback(from_engine=f, to_engine=t):
                out.fallbacks.append(f"{f}->{t}")
            case protocol.Error(code=code):
                out.errors.append(code)
            case protocol.TurnEnd():
                out.total_s = now - t_sched
                break
    out.audio_s = play.audio_s
    out.underruns = play.underruns
    out.gap_s = play.gap_s
    if out.errors:
        out.error = out.errors[0]
    elif play.audio_s == 0:
        out.error = "no_audio"


# --- the run -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunResult:
    config: LoadConfig
    outcomes: list[Outcome]
    scheduled: int
    dropped_by_cap: int
    wall_s: float  # first scheduled start -> last request finished
    schedule_s: float  # the scheduled span (duration)
