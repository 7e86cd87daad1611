"""The web client in a real browser beside other listeners, on a Piper worker (issue 24).

The page speaks a paragraph while three other listeners talk to the same worker, each hearing its
turns at real-time pace and speaking again; the page hears no underrun and every sentence in the
Piper voice, and no worker is taken for dead. On Piper workers, as ``make up`` runs them: the
random-weight Bark dev worker cannot serve four real-time listeners on a CPU, so this case left the
suite until it ran on Piper.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from websockets.asyncio.client import connect

from broker.audio import AudioFrame
from broker.launcher import Mosquitto
from sesame_voice.capacity import default_workers
from tests.clients.test_browser import (
    CHROMIUM,
    PARAGRAPH,
    SENTENCES,
    TURN_PLAYED,
    shown_sentences,
    stats,
    timeline,
    wait,
    web_client,
)
from tests.conftest import Service, T

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make system-deps)"),
    # No gap in real time holds on cores the test owns: make test runs it alone (tests/conftest.py).
    pytest.mark.realtime,
]
pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")


@pytest.fixture(scope="module")
def piper_service() -> Iterator[Service]:
    """Broker + gateway (tiers as ``make up``: workers, piper, espeak-ng; no cache, so every
    sentence is synthesized) + the Piper workers ``make up`` starts on this machine."""
    with Mosquitto() as broker:
        svc = Service(
            broker, None, {"SESAME_TIERS": "workers,piper,espeak-ng", "SESAME_CACHE_ENABLED": "false"}
        )
        try:
            for n in range(default_workers("piper", os.cpu_count() or 1)):
                # The shipped heartbeat (500 ms), as make up runs it, not the tests' faster one.
                svc.start_worker(f"piper-{n + 1}", engine="piper", SESAME_HEARTBEAT_INTERVAL_MS="500")
            yield svc
        finally:
            svc.close()


@pytest.fixture
def piper_page(piper_service: Service, tmp_path: Path) -> Iterator[Page]:
    with web_client(piper_service.http_url, tmp_path / "profile") as page:
        yield page


def fallbacks(service: Service) -> list[tuple[object, ...]]:
    """The gateway's fallbacks: (session, seq, from, to, reason)."""
    keys = ("session_id", "seq", "from_engine", "to_engine", "reason")
    return [tuple(e.get(k) for k in keys) for e in service.gateway.events() if e.get("event") == "fallback"]


async def _other_listeners(ws_url: str, n: int, talking: threading.Event, stop: threading.Event) -> None:
    """``n`` polite listeners beside the page: each speaks a turn, hears it at real-time pace, and
    speaks again, until ``stop``. ``talking`` is set once every one of them has heard audio."""
    heard: set[int] = set()

    async def one(i: int) -> None:
        async with connect(ws_url, max_size=1 << 22) as ws:
            await ws.recv()
            while not stop.is_set():
                await ws.send(json.dumps({"type": "speak", "text": PARAGRAPH}))
                audio_s, began = 0.0, time.monotonic()
                async with asyncio.timeout(24 * T):
                    while True:
                        raw = await ws.recv()
                        if isinstance(raw, bytes):
                            frame = AudioFrame.from_bytes(raw)
                            audio_s += frame.samples / frame.sample_rate
                            heard.add(i)
                            if len(heard) == n:
                                talking.set()
                        elif json.loads(raw)["type"] == "turn_end":
                            break
                # The listener hears it at real-time pace (a simulated playback, not a wait).
                await asyncio.sleep(max(0.0, began + audio_s - time.monotonic()))

    await asyncio.gather(*(one(i) for i in range(n)))


def test_the_page_beside_three_other_listeners_hears_no_gap_in_the_primary_voice(
    piper_page: Page, piper_service: Service
) -> None:
    talking, stop = threading.Event(), threading.Event()
    others = threading.Thread(
        target=asyncio.run, args=(_other_listeners(piper_service.ws_url, 3, talking, stop),), daemon=True
    )
    others.start()
    try:
        assert talking.wait(24 * T)
        piper_page.fill("#text", PARAGRAPH)
        piper_page.click("#speak")
        wait(piper_page, TURN_PLAYED, 24 * T, arg=1)
        s = stats(piper_page)
        assert s["sentences"] == 3
        assert s["underruns"] == 0, timeline(piper_page)
        shown = shown_sentences(piper_page)
        assert [x["text"] for x in shown] == SENTENCES
        # Every sentence in the Piper voice: from a worker or, when one could not meet its need,
        # from the gateway's own Piper tier (the closest voice), never espeak-ng's.
        assert {x["engine"] for x in shown} == {"piper"}, (timeline(piper_page), fallbacks(piper_service))
    finally:
        stop.set()
        others.join(12 * T)
    assert not others.is_alive()
    # The worker, busy with four listeners, was never taken for dead.
    assert not [
        e
        for e in piper_service.gateway.events()
        if e.get("event") == "worker_change" and e.get("up") is False
    ]
