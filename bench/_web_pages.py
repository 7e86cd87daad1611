"""The web client (clients/web, served by the gateways through nginx) in headless Chromium, for
bench/cluster.py: each page is one ``SesameVoice`` session (the page's own ``window.sesame``, with
its own reconnect logic) that speaks turns one after another, a word every ``word_s``.

What a page heard is read from the page itself: a hook on the client's events records every
sentence delivered (``sentence_end``: heard whole, with the engine of its last start; an ``error``
that carries a sentence's text: texted), every reconnect attempt, and when each audio frame
arrived and how long it plays (the same playout clock as the ``VoiceClient`` turns:
``clients.stats.Playout`` from arrival times). Debian's chromium through playwright, as the
browser tests drive it (tests/clients/test_browser.py); never ``playwright install``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright

from clients.stats import Playout
from tests.support.chromium import ARGS, CHROMIUM

# Installed once the page's client has its first `ready`; `window.benchTake()` hands over (and
# clears) what was recorded since the last call.
HOOK = """() => {
  const v = window.sesame;
  const log = { delivered: [], audio: [], reconnecting: 0, failures: [] };
  const current = new Map(); // seq -> {text, engine}: a new session numbers from 0 again
  v.on("sentence_start", (m) => current.set(m.seq, { text: m.text, engine: m.engine }));
  v.on("sentence_end", (m) => {
    const s = current.get(m.seq);
    if (s) log.delivered.push([s.text, s.engine]);
  });
  v.on("error", (m) => {
    if (m.text) log.delivered.push([m.text, "text"]);
    else log.failures.push(`${m.code}: ${m.message}`);
  });
  v.on("reconnecting", (m) => { if (m.code !== null) log.reconnecting += 1; });
  window.benchFail = (what) => log.failures.push(what);
  const receive = v.receive.bind(v);
  v.receive = (data) => {
    if (typeof data !== "string" && data.byteLength > 16) {
      const rate = new DataView(data).getUint32(12, true);
      log.audio.push([performance.now() / 1000, (data.byteLength - 16) / 2 / rate]);
    }
    receive(data);
  };
  window.benchTake = () => {
    const out = { ...log, session: v.session ? v.session.session_id : null };
    log.delivered = []; log.audio = []; log.reconnecting = 0; log.failures = [];
    return out;
  };
}"""

# The turn as an LLM writes it, a word every `gap` ms, then a flush; not awaited by the caller.
STREAM = """([words, gap]) => {
  (async () => {
    for (let i = 0; i < words.length; i++) {
      if (i) await new Promise((r) => setTimeout(r, gap));
      try { window.sesame.sendText(i ? " " + words[i] : words[i]); }
      catch (err) { window.benchFail(`text: ${err}`); }
    }
    try { window.sesame.flush(); } catch (err) { window.benchFail(`flush: ${err}`); }
  })();
}"""


@dataclass
class Heard:
    """What one poll of a page returned."""

    delivered: list[tuple[str, str]]  # (sentence text, engine or "text")
    audio: list[tuple[float, float]]  # (arrival s, duration s)
    reconnecting: int
    failures: list[str]
    session: str | None


@dataclass
class WebPage:
    index: int
    page: Page
    sessions: list[str] = field(default_factory=list)  # every session id the page has had

    async def take(self) -> Heard:
        raw: dict[str, Any] = await self.page.evaluate("() => window.benchTake()")
        heard = Heard(
            [(str(t), str(e)) for t, e in raw["delivered"]],
            [(float(a), float(d)) for a, d in raw["audio"]],
            int(raw["reconnecting"]),
            [str(f) for f in raw["failures"]],
            raw["session"],
        )
        if heard.session and (not self.sessions or self.sessions[-1] != heard.session):
            self.sessions.append(heard.session)
        return heard

    async def stream(self, text: str, word_s: float) -> None:
        await self.page.evaluate(STREAM, [text.split(" "), round(word_s * 1000)])


@asynccontextmanager
async def web_pages(http_url: str, n: int, timeout_s: float) -> AsyncIterator[list[WebPage]]:
    """``n`` pages of the web client from ``http_url``, each connected (its first ``ready``)."""
    if n <= 0:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="sesame-cluster-chromium-") as profile:
        async with async_playwright() as p:
            context: BrowserContext = await p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=ARGS
            )
            try:
                pages = []
                for i in range(n):
                    page = await context.new_page()
                    await page.goto(f"{http_url}/")
                    await page.wait_for_function(
                        "() => window.sesame && window.sesame.session", timeout=timeout_s * 1000
                    )
                    await page.evaluate(HOOK)
                    web = WebPage(i, page)
                    await web.take()
                    pages.append(web)
                yield pages
            finally:
                await context.close()


async def speak_turn(
    web: WebPage,
    texts: list[str],
    word_s: float,
    timeout_s: float,
    on_heard: Callable[[str, str], None],
) -> tuple[int, float, list[str]]:
    """Stream ``texts`` as one turn and poll the page until each was delivered (or ``timeout_s``);
    ``on_heard(text, engine)`` for every delivery, of this turn's sentences or any other. Returns
    the reconnect attempts seen, the turn's longest silence (playout clock) and what the page's
    client reported failing (an error without a sentence's text, a send that threw)."""
    for text, engine in (await web.take()).delivered:  # late deliveries of earlier turns count too
        on_heard(text, engine)
    await web.stream(" ".join(texts), word_s)
    play = Playout()
    reconnecting = 0
    failures: list[str] = []
    heard: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        got = await web.take()
        for arrival, duration in got.audio:
            play.audio(arrival, duration)
        for text, engine in got.delivered:
            heard.add(text)
            on_heard(text, engine)
        reconnecting += got.reconnecting
        failures += got.failures
        if all(t in heard for t in texts):
            break
    return reconnecting, play.max_gap_s, failures
