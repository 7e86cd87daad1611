"""Scale-out: two gateways behind nginx, a two-node broker cluster, a worker on each node; kill
one of each under open-loop turns. Does anything get lost or said twice?

    redis + aedes nodes a, b   (tests/support/cluster.py; `make node-deps`)
    gateway g1 on a,b  gateway g2 on b,a     (SESAME_MQTT_URL lists both nodes, its own first)
    worker w-a on a,b  worker w-b on b,a     (Piper by default: --engine)
    nginx: upstream of g1 and g2 (deploy/nginx/upstream-two.conf's shape, sesame-proxy.conf)

Turns start on schedule (``--rate`` per second, open loop), each a new ``VoiceClient`` session
through nginx streaming, a word every ``--word-ms`` as an LLM writes, two sentences whose text is
unique to the turn (so a turn is in flight for about two seconds); the client's own
reconnect logic (resume, or a fresh session with the unheard text said again) does the client
side. Every ``--fault-every`` seconds the next fault, in this order, each once:

    broker    SIGKILL aedes node a (g1 and w-a move to node b)
    gateway   SIGKILL g1 (its clients reconnect through nginx to g2)
    worker    SIGKILL w-b (g2's jobs go to w-a)

With ``--browser N``, N pages of the web client (clients/web, served by the gateways through
nginx) run in headless Chromium beside them, each one session speaking turns one after another
(two sentences unique to the page and turn, a word every ``--word-ms``), the web client's own
reconnect logic doing the client side (bench/_web_pages.py); the gateway killed is then the one
holding the first page's session. The report has a row per kind of client.

Nothing is restarted: after the three faults one node, one gateway and one worker serve. After
the schedule, turns go on until every fault has healed or ``--heal-timeout`` passes.

Per sentence (by its text): ``spoken`` (heard, once), ``texted`` (an error frame with its text),
``lost`` (neither), ``doubled`` (heard or texted more than once). The longest silence a listener
heard inside a turn (playout clock, from the audio chunks' arrival). Per fault: ``moved_s`` (broker:
until every process that was on the dead node logged its connection to the other) and ``heal_s``:
until a turn started after the fault (and after the move) has been heard whole, every sentence
from a worker's voice.

    .venv/bin/python bench/cluster.py --duration 90 --rate 1 --fault-every 20 --json cluster.json
    .venv/bin/python bench/cluster.py --smoke     # ~40 s, espeak-ng workers only, each fault once
    .venv/bin/python bench/cluster.py --smoke --browser 2     # and two web-client pages
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _cluster_report import FAULTS, Fault, Run, Sentence, TurnRun, render, report
from _cluster_stack import Deployment
from _web_pages import WebPage, speak_turn, web_pages

from clients.stats import Playout
from clients.voice_client import VoiceClient
from clients.voice_events import (
    AudioChunk,
    ConnectionLost,
    Reconnecting,
    SentenceAudio,
    SentenceFailed,
    TurnEnded,
)

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def say(n: int) -> str:
    return " ".join(WORDS[int(d)] for d in str(n))


async def words(text: str, gap_s: float) -> AsyncIterator[str]:
    """The turn as an LLM writes it: a word every ``gap_s``."""
    for i, word in enumerate(text.split(" ")):
        if i:
            await asyncio.sleep(gap_s)
        yield word if i == 0 else " " + word


async def one_turn(run: Run, url: str, number: int, timeout_s: float, word_s: float) -> None:
    texts = [f"Turn {say(number)} begins here.", f"Turn {say(number)} is done now."]
    turn = TurnRun(number, run.now(), sentences=[Sentence(number, t) for t in texts])
    run.turns.append(turn)
    by_text = {s.text: s for s in turn.sentences}
    play = Playout()
    try:
        async with asyncio.timeout(timeout_s), VoiceClient(url) as voice:
            sender = asyncio.create_task(voice.stream(words(" ".join(texts), word_s)))
            try:
                await listen(voice, turn, play, by_text)
            finally:
                sender.cancel()
    except (TimeoutError, ConnectionLost, OSError):
        pass  # what was not heard stays lost
    turn.ended_at = run.now()
    turn.silence_s = play.max_gap_s


async def listen(voice: VoiceClient, turn: TurnRun, play: Playout, by_text: dict[str, Sentence]) -> None:
    loop = asyncio.get_running_loop()
    async for event in voice.events():
        match event:
            case AudioChunk(payload=payload, sample_rate=rate):
                play.audio(loop.time(), len(payload) / 2 / rate)
            case SentenceAudio(text=text, engine=engine) if text in by_text:
                by_text[text].heard.append(engine)
            case SentenceFailed(text=text) if text in by_text:
                by_text[text].heard.append("text")
                by_text[text].texted_at = loop.time()
            case Reconnecting():
                turn.reconnects += 1
            case TurnEnded() if all(s.heard for s in turn.sentences):
                # A fresh session after a reconnect ends the turn when its re-sent text is
                # heard; the turn is whole when every sentence was heard.
                return


async def web_turns(run: Run, web: WebPage, stop: asyncio.Event, args: argparse.Namespace) -> None:
    """One page's turns, one after another, until ``stop``."""
    number = 0
    while not stop.is_set():
        said = f"Page {say(web.index)} turn {say(number)}"
        turn = TurnRun(number, run.now(), kind="web")
        turn.sentences = [Sentence(number, f"{said} begins here."), Sentence(number, f"{said} is done now.")]
        run.turns.append(turn)
        run.web_sentences.update({s.text: s for s in turn.sentences})
        texts = [s.text for s in turn.sentences]
        got = await speak_turn(web, texts, args.word_ms / 1000, args.turn_timeout, partial(heard_on_web, run))
        turn.reconnects, turn.silence_s, failures = got
        turn.ended_at = run.now()
        run.web_failures += failures
        number += 1


def heard_on_web(run: Run, text: str, engine: str) -> None:
    sentence = run.web_sentences.get(text)
    if sentence is not None:
        sentence.heard.append(engine)
        if engine == "text" and sentence.texted_at is None:
            sentence.texted_at = time.monotonic()


def healed(run: Run) -> bool:
    """Every fault of the cycle was injected and has healed (turns go on until then)."""
    for fault in run.faults:
        if fault.heal_s is None:
            heal(run, fault)
    return len(run.faults) == len(FAULTS) and all(f.heal_s is not None for f in run.faults)


def heal(run: Run, fault: Fault) -> None:
    """The first turn started after the fault (and the move) heard whole from workers' voices."""
    since = fault.at + (fault.moved_s or 0.0)
    fault.heal_s = None
    for turn in run.turns:
        if turn.started_at < since or turn.ended_at is None:
            continue
        if all(s.heard and s.heard[0] == run.engine for s in turn.sentences):
            fault.heal_s = round(turn.ended_at - fault.at, 2)
            return


async def drive(args: argparse.Namespace, dep: Deployment) -> Run:
    async with web_pages(dep.http_url, args.browser, 120) as pages:
        run = Run(time.monotonic(), args.engine)
        stop = asyncio.Event()
        paging = [asyncio.create_task(web_turns(run, web, stop, args)) for web in pages]
        await open_loop(args, dep, run, pages)
        stop.set()
        if paging:
            await asyncio.wait(paging, timeout=args.turn_timeout + 5)
        for web in pages:  # what came in after a page's last turn was over
            for text, engine in (await web.take()).delivered:
                heard_on_web(run, text, engine)
        for task in paging:
            if not task.done():
                task.cancel()
                run.web_failures.append("a page's last turn did not end in time")
            elif task.exception() is not None:
                run.web_failures.append(f"page task: {task.exception()!r}")
    for fault in run.faults:
        heal(run, fault)
    return run


async def open_loop(args: argparse.Namespace, dep: Deployment, run: Run, pages: list[WebPage]) -> None:
    tasks: set[asyncio.Task[None]] = set()
    next_fault = args.fault_every
    number = 0
    end = args.duration
    while run.now() < end or (not healed(run) and run.now() < end + args.heal_timeout):
        task = asyncio.create_task(one_turn(run, dep.ws_url, number, args.turn_timeout, args.word_ms / 1000))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        number += 1
        if len(run.faults) < len(FAULTS) and run.now() >= next_fault:
            kind = FAULTS[len(run.faults)]
            target = {"broker": "node a", "gateway": "g1", "worker": "w-b"}[kind]
            if kind == "gateway" and pages and pages[0].sessions:
                target = dep.gateway_of(pages[0].sessions[-1]) or target  # a page's gateway dies
            fault = Fault(kind, run.now(), target)
            mono = time.monotonic()
            if kind == "broker":
                dep.cluster.kill("a")
            else:
                dep.procs[target].signal(signal.SIGKILL)
            run.faults.append(fault)
            next_fault += args.fault_every
            if kind == "broker":
                watch = asyncio.create_task(moved(dep, fault, mono))
                tasks.add(watch)
                watch.add_done_callback(tasks.discard)
        await asyncio.sleep(1.0 / args.rate)
    if tasks:
        await asyncio.wait(tasks, timeout=args.turn_timeout + 5)


async def moved(dep: Deployment, fault: Fault, mono: float) -> None:
    """Until every process that was on node a when it died is connected to node b."""
    on_a = [name for name in dep.procs if dep.node_at(name, mono) == "a"]
    for _ in range(600):
        times = [dep.connected_to(name, "b", mono) for name in on_a]
        if all(t is not None for t in times):
            fault.moved_s = round(max((t for t in times if t is not None), default=mono) - mono, 2)
            return
        await asyncio.sleep(0.1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=90.0, help="seconds of turns")
    p.add_argument("--rate", type=float, default=1.0, help="turns per second (open loop)")
    p.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    p.add_argument("--engine", default="piper", choices=("piper", "espeak-ng"), help="the workers' engine")
    p.add_argument("--tiers", default="workers,espeak-ng", help="the gateways' SESAME_TIERS")
    p.add_argument("--turn-timeout", type=float, default=60.0)
    p.add_argument(
        "--heal-timeout", type=float, default=60.0, help="after the schedule, turns go on until healed"
    )
    p.add_argument("--word-ms", type=float, default=150.0, help="the client streams a word every this often")
    p.add_argument(
        "--browser", type=int, default=0, help="pages of the web client in headless Chromium beside them"
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--logs", type=Path, help="write every process's log lines into this folder")
    p.add_argument(
        "--smoke", action="store_true", help="40 s, 1 turn/s, a fault every 10 s, espeak-ng workers only"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.duration, args.rate, args.fault_every = 40.0, 1.0, 10.0
        args.engine, args.tiers = "espeak-ng", "workers"  # every sentence heard is a worker's
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="sesame-cluster-bench-") as tmp:
        dep = Deployment(args, Path(tmp))
        try:
            run = asyncio.run(drive(args, dep))
        finally:
            if args.logs is not None:
                dep.keep_logs(args.logs)
            dep.close()
    rep = report(run, args)
    print(render(rep))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
