"""Where the web page's underruns come from: one page alone on Piper workers, sentence by sentence.

The stack of ``capacity.py --listeners`` (tiers ``workers,piper,espeak-ng``, cache off, the Piper
workers ``up`` starts here) with ``SESAME_DEBUG_STAMPS`` on. The web client in headless Chromium
(bench/_web_pages.py) streams the capacity bench's page turns (the same sentences, same seed: 2 to
4 sentences, a word every 150 ms) and hears each out. Per sentence it prints, on one clock (the
gateway's, the page's aligned by the earliest first-audio frame): when its text was complete (its
last word sent by the page), when the gateway read the text frame that completed it (``text_in``:
the last one before its dispatch), when the gateway dispatched it (``cut``: the segmenter emitted it and
the lookahead let it go), its first audio at the gateway and at the page, when the audio before it
runs out (the listener's playback clock), and each underrun the page's player reported (the
sentence that ran dry). Then how often the segmenter cut a sentence early for the playback
deadline (chunks after a turn's first that do not end a sentence: a seam inside a sentence).

``--others K``: K of capacity.py's listeners (each speaks a turn of 2 to 4 sentences, hears it at
real-time pace, thinks 1 to 3 s) talk beside the page, as in ``capacity.py --listeners --page``.

    .venv/bin/python bench/page_timeline.py [--turns 8] [--seed 501] [--word-ms 150] [--others K]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._listeners import HEARD, SENTENCES, person
from bench._stack import Stack, machine
from bench._web_pages import web_pages
from sesame_voice.capacity import default_workers

SENT = """([words, gap]) => {
  window.benchSent = [];
  (async () => {
    for (let i = 0; i < words.length; i++) {
      if (i) await new Promise((r) => setTimeout(r, gap));
      window.sesame.sendText(i ? " " + words[i] : words[i]);
      window.benchSent.push(performance.now() / 1000);
    }
    window.sesame.flush();
  })();
}"""
TAKE = """() => ({
  sent: window.benchSent,
  sentences: window.sesame.sentences.map((s) => ({seq: s.seq, turn: s.turn, text: s.text,
    engine: s.engine, first: s.firstAudioAt / 1000, samples: s.samples})),
  underruns: window.sesame.underrunLog.map((u) => ({at: u.at / 1000, seq: u.seq})),
  rate: window.sesame.session.sample_rate,
  session: window.sesame.session.session_id,
})"""


async def speak(stack: Stack, turns: int, seed: int, word_s: float, others: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # as capacity.py's page_listener draws its turns
    out: list[dict[str, Any]] = []
    async with web_pages(stack.http_url, 1, 60) as [web]:
        loop = asyncio.get_running_loop()
        start, stop = loop.time(), loop.time() + 7.0 * turns  # about the page's turns
        beside = [person(stack.ws_url, start + 0.3 * i, stop, seed + i, False) for i in range(others)]
        talking = asyncio.gather(*beside)
        for t in range(turns):
            words = " ".join(rng.sample(SENTENCES, rng.randint(2, 4))).split(" ")
            await web.page.evaluate(SENT, [words, round(word_s * 1000)])
            await web.page.wait_for_function(HEARD, arg=t, timeout=60_000)
            got: dict[str, Any] = await web.page.evaluate(TAKE)
            out.append({"words": words, **got})
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        await talking
    return out


def _r(x: float | None, start: float) -> str:
    return "   -  " if x is None else f"{x - start:6.2f}"


def report(turns: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    page = turns[-1]["session"]
    hops = {
        int(e["seq"]): e["hops"]
        for e in events
        if e.get("event") == "hop_stamps" and e.get("session_id") == page
    }
    sentences = turns[-1]["sentences"]
    rate = turns[-1]["rate"]
    # page clock -> gateway clock: the smallest (page first audio - gateway frame queued)
    offset = min(s["first"] - hops[s["seq"]]["frame_queued"] for s in sentences if s["seq"] in hops)
    underruns = {u["seq"]: u["at"] - offset for tr in turns for u in tr["underruns"]}
    print(f"page_timeline: {len(turns)} turns, {len(sentences)} sentences; {machine()}")
    print("times in s from the turn's first word; dry: when the audio before it runs out")
    heads = "turn seq complete text-in  cut  gw-first page-1st  dry   audio  text"
    print(heads)
    n_under = 0
    for t, tr in enumerate(turns):
        start = tr["sent"][0] - offset
        ends, pos = [], 0  # each sentence's last word index in the turn's words
        mine = [s for s in sentences if s["turn"] == t]
        for s in mine:
            pos += len(s["text"].split(" "))
            ends.append(tr["sent"][min(pos, len(tr["sent"])) - 1] - offset)
        heard_until = None
        for s, complete in zip(mine, ends, strict=True):
            h = hops.get(s["seq"], {})
            first = s["first"] - offset
            dry = heard_until
            heard_until = max(first, heard_until or first) + s["samples"] / rate
            mark = ""
            if s["seq"] in underruns:
                n_under += 1
                mark = f"  <- UNDERRUN at {underruns[s['seq']] - start:.2f}"

            times = [complete, h.get("text_in"), h.get("cut"), h.get("frame_queued"), first, dry]
            cells = " ".join(_r(x, start) for x in times)
            print(f"{t:4d} {s['seq']:3d} {cells} {s['samples'] / rate:5.2f}  {s['text'][:48]!r}{mark}")
    # A chunk that does not end a sentence, after a turn's first chunk: a playback-deadline cut
    # inside a sentence (one at a sentence's end is no seam; the first chunk is the first-chunk cut).
    firsts = {min(s["seq"] for s in sentences if s["turn"] == t) for t in range(len(turns))}
    seams = sum(s["text"][-1] not in ".!?" and s["seq"] not in firsts for s in sentences)
    print(
        f"underruns {n_under} in {len(turns)} turns; deadline cuts inside a sentence {seams} "
        f"of {len(sentences)} chunks"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--seed", type=int, default=501, help="capacity.py's page seed: --seed + 500")
    ap.add_argument("--word-ms", type=float, default=150.0)
    ap.add_argument("--others", type=int, default=0, help="capacity.py's listeners beside the page")
    ap.add_argument("--workers", type=int, default=default_workers("piper", os.cpu_count() or 1))
    a = ap.parse_args()
    env = {
        "SESAME_TIERS": "workers,piper,espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_DEBUG_STAMPS": "true",
    }
    with Stack(env) as stack:
        for i in range(a.workers):
            stack.start_worker(
                f"piper-{i + 1}", "piper", SESAME_HEARTBEAT_INTERVAL_MS="500", SESAME_WORKERS=str(a.workers)
            )
        turns = asyncio.run(speak(stack, a.turns, a.seed, a.word_ms / 1000, a.others))
        events = stack.gateway.events()
    report(turns, events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
