"""The web client in a real browser (Debian's chromium through playwright) against the running service.

Checks what a listener would notice: the audio context runs, every audio frame received reaches the
player, the sentences are shown with the engine that spoke them, and Stop silences the player at
once. Whether playback has no underrun is checked on Piper workers (test_browser_loaded.py), not
here: these pages speak through the random-weight Bark dev worker, which a 2-core machine under the
suite's parallelism does not always run faster than real time (a fresh clone's make test heard 2
underruns in the word-by-word test): a count of gaps with it asserts the machine's speed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import Service, T
from tests.support.chromium import ARGS, CHROMIUM

PARAGRAPH = "The sun rose over the quiet hills. Birds began to sing in the trees! Was it morning already?"
SENTENCES = [
    "The sun rose over the quiet hills.",
    "Birds began to sing in the trees!",
    "Was it morning already?",
]
ENGINES = {"bark", "elevenlabs", "edge-tts", "espeak-ng"}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make system-deps)")

# Everything heard: the turn ended and the player played (or dropped) all it was given.
TURN_PLAYED = """(turns) => {
  const s = window.sesame.stats;
  return s.turns >= turns && s.samplesScheduled > 0
    && s.framesScheduled + s.framesDropped === s.framesReceived
    && s.samplesPlayed + s.samplesDropped >= s.samplesScheduled && s.playerState === "idle";
}"""


@contextlib.contextmanager
def web_client(http_url: str, profile: Path) -> Iterator[Page]:
    """The web client served at ``http_url`` in headless Chromium, its audio context up; no page
    error or console error by the end."""
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{http_url}/")
            page.wait_for_function(
                "() => window.sesame && window.sesame.stats.contextState !== 'none'", timeout=4 * T * 1000
            )
            yield page
            assert page_errors == []
        finally:
            context.close()


@pytest.fixture
def page(service: Service, tmp_path: Path) -> Iterator[Page]:
    with web_client(service.http_url, tmp_path / "profile") as page:
        yield page


def stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = page.evaluate("() => ({...window.sesame.stats})")
    return stats


def shown_sentences(page: Page) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#sentences li')].map((li) => ({
              text: li.querySelector('.text').textContent,
              engine: li.querySelector('.engine').textContent,
              tags: [...li.querySelectorAll('.tag')].map((t) => t.textContent),
           }))"""
    )
    return shown


def timeline(page: Page) -> str:
    """When each sentence started, got its first audio and ended, and when the player ran dry (ms)."""
    info: dict[str, Any] = page.evaluate(
        """() => ({
          sentences: window.sesame.sentences.map((r) => [r.seq, r.engine, r.samples,
            Math.round(r.startedAt), Math.round(r.firstAudioAt), Math.round(r.endedAt)]),
          underruns: window.sesame.underrunLog.map((u) => [Math.round(u.at), u.seq, u.playedMs]),
        })"""
    )
    return (
        f"sentences [seq, engine, samples, start, first audio, end]: {info['sentences']}; "
        f"underruns [at, seq, played ms]: {info['underruns']}"
    )


def wait(page: Page, condition: str, timeout: float, arg: object = None) -> None:
    """Wait on a page condition; on timeout, fail with what the page shows."""
    try:
        page.wait_for_function(condition, arg=arg, timeout=timeout * 1000)
    except PlaywrightTimeout:
        status = page.inner_text("#status")
        errors = page.inner_text("#errors")
        pytest.fail(
            f"timed out on {condition!r}: status={status!r} errors={errors!r} stats={stats(page)} "
            f"sentences={shown_sentences(page)}"
        )


def test_speak_a_paragraph(page: Page) -> None:
    page.fill("#text", PARAGRAPH)
    page.click("#speak")
    wait(page, TURN_PLAYED, 24 * T, arg=1)

    s = stats(page)
    assert s["contextState"] == "running"
    assert s["framesReceived"] > 0
    assert s["framesScheduled"] == s["framesReceived"]
    assert s["framesDropped"] == 0
    assert s["samplesPlayed"] == s["samplesScheduled"]
    assert s["sentences"] == 3, timeline(page)
    shown = shown_sentences(page)
    assert [x["text"] for x in shown] == SENTENCES
    assert all(x["engine"] in ENGINES for x in shown), shown
    assert page.inner_text("#errors") == ""
    # The samples played match what the server said each sentence had.
    assert (
        page.evaluate("() => window.sesame.sentences.reduce((n, r) => n + r.samples, 0)")
        == s["samplesScheduled"]
    )


def test_stream_word_by_word_then_stop(page: Page) -> None:
    page.fill("#text", PARAGRAPH)
    page.click("#stream")
    wait(page, TURN_PLAYED, 24 * T, arg=1)
    s = stats(page)
    assert [x["text"] for x in shown_sentences(page)] == SENTENCES  # the server heard whole sentences
    assert s["framesScheduled"] == s["framesReceived"] > 0

    # Barge-in: a long turn, Stop as soon as audio plays; the player is emptied at once.
    long_text = " ".join(f"This is sentence number {i} of a rather long answer." for i in range(1, 13))
    page.fill("#text", long_text)
    page.click("#speak")
    wait(
        page,
        "() => window.sesame.stats.playerState === 'playing' && window.sesame.stats.sentences > 3",
        24 * T,
    )
    page.click("#stop")
    wait(
        page,
        "() => document.querySelector('#status').textContent === 'stopped'"
        " && window.sesame.stats.playerState === 'idle' && window.sesame.stats.bufferedMs === 0",
        4 * T,
    )
    s = stats(page)
    assert s["turns"] == 1  # the stopped turn never ended
    assert s["samplesPlayed"] + s["samplesDropped"] == s["samplesScheduled"]

    # The session goes on after a cancel.
    page.fill("#text", "Are you still there?")
    page.click("#speak")
    wait(page, TURN_PLAYED, 24 * T, arg=2)
    assert shown_sentences(page)[-1]["text"] == "Are you still there?"


# Server messages handed to the client directly (SesameVoice.receive), to drive the player through
# the cases a healthy server rarely produces: a late frame, a restarted sentence, an unspoken one.
DRIVER = """() => {
  const v = window.sesame;
  const rate = v.context.sampleRate;
  const control = (msg) => v.receive(JSON.stringify(msg));
  const audio = (seq, frames) => {
    for (let index = 0; index < frames; index++) {
      const n = Math.round(rate * 0.04);
      const buf = new ArrayBuffer(16 + 2 * n);
      const dv = new DataView(buf);
      dv.setUint8(0, 0x53); dv.setUint8(1, 0x56); dv.setUint8(2, 1); dv.setUint8(3, 0);
      dv.setUint32(4, seq, true); dv.setUint32(8, index, true); dv.setUint32(12, rate, true);
      for (let i = 0; i < n; i++) dv.setInt16(16 + 2 * i, Math.round(8000 * Math.sin(i / 8)), true);
      v.receive(buf);
    }
  };
  window.drive = { control, audio };
}"""


def test_player_counts_underruns_drops_restarted_audio_and_shows_unspoken_text(page: Page) -> None:
    page.evaluate(DRIVER)
    start = {
        "type": "sentence_start",
        "seq": 100,
        "turn": 7,
        "text": "A late sentence.",
        "engine": "bark",
        "cached": False,
        "restart": False,
    }
    # 200 ms of audio, then nothing while the sentence is still open: one underrun.
    page.evaluate("(m) => { drive.control(m); drive.audio(100, 5); }", start)
    wait(
        page,
        "() => window.sesame.stats.underruns === 1 && window.sesame.stats.playerState === 'prebuffering'",
        4 * T,
    )
    # The rest arrives and the turn ends: it plays out, and running dry at the end is no underrun.
    page.evaluate("""() => { drive.audio(100, 3); drive.control({type: 'sentence_end', seq: 100, samples: 0});
                             drive.control({type: 'turn_end', turn: 7}); }""")
    wait(
        page,
        "() => window.sesame.stats.playerState === 'idle' && window.sesame.stats.bufferedMs === 0",
        4 * T,
    )
    assert stats(page)["underruns"] == 1

    # A restarted sentence: its unplayed audio from the first engine is dropped, the redo plays.
    restart = {**start, "seq": 101, "turn": 8, "text": "Redone sentence.", "engine": "bark"}
    page.evaluate("(m) => { drive.control(m); drive.audio(101, 50); }", restart)
    wait(page, "() => window.sesame.stats.playerState === 'playing'", 4 * T)
    before = stats(page)
    page.evaluate(
        """(m) => { drive.control({type: 'fallback', seq: 101, from: 'bark', to: 'espeak-ng',
                                   reason: 'worker_dead'});
                    drive.control(m); drive.audio(101, 5);
                    drive.control({type: 'sentence_end', seq: 101, samples: 0});
                    drive.control({type: 'turn_end', turn: 8}); }""",
        {**restart, "engine": "espeak-ng", "restart": True},
    )
    wait(
        page,
        "() => window.sesame.stats.playerState === 'idle' && window.sesame.stats.bufferedMs === 0",
        4 * T,
    )
    after = stats(page)
    assert after["samplesDropped"] > before["samplesDropped"]
    assert after["samplesPlayed"] + after["samplesDropped"] == after["samplesScheduled"]
    assert after["underruns"] == 1
    redone = shown_sentences(page)[-1]
    assert redone["text"] == "Redone sentence." and redone["engine"] == "espeak-ng"
    assert any("fallback" in t for t in redone["tags"]) and "restarted" in redone["tags"]

    # A sentence no voice could speak: its text is shown.
    page.evaluate(
        """() => drive.control({type: 'error', code: 'speech_unavailable', message: 'no voice could speak',
                               seq: 102, text: 'These words were never spoken.'})"""
    )
    assert "These words were never spoken." in page.inner_text("#errors")
    assert shown_sentences(page)[-1]["engine"] == "not spoken"


class CuttableRelay:
    """A TCP relay on loopback (threads) whose connections the test can cut with a reset."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                with self._lock:
                    self._conns += [client, upstream]
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)

    def cut(self) -> None:
        """Drop both sides without a close frame, like a dropped network (shutdown wakes the pumps'
        reads; a close with no linger then resets)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_dropped_socket_resumes_the_session_with_its_token(page: Page, service: Service) -> None:
    """The web client resumes as the session's owner (docs/security.md): it reconnects with the
    session id, the resume token of its last ready and the frames it heard; each sentence is heard
    once, in order, and the gateway answers ``resumed: true``."""
    relay = CuttableRelay(service.port)
    try:
        first = page.evaluate(
            "async (url) => (await window.sesame.connect(url)).session_id", f"ws://127.0.0.1:{relay.port}/ws"
        )
        page.evaluate("(text) => window.sesame.speak(text)", PARAGRAPH)
        wait(page, "() => window.sesame.stats.framesReceived > 0", 12 * T)
        assert stats(page)["turns"] == 0  # mid-turn
        relay.cut()
        wait(page, TURN_PLAYED, 24 * T, arg=1)
        session = page.evaluate("() => window.sesame.session")
        assert session["resumed"] is True and session["session_id"] == first
        assert page.evaluate("() => window.sesame.reconnects") == 1
        heard = page.evaluate("() => window.sesame.sentences.map((r) => [r.text, r.samples > 0, r.restarts])")
        assert heard == [[text, True, 0] for text in SENTENCES]  # each once, whole, in order
    finally:
        relay.close()


def test_a_reconnect_that_cannot_resume_says_the_unheard_text_again(page: Page, service: Service) -> None:
    """When the gateway cannot resume the session (another gateway behind nginx after a kill; here
    a resume token it does not know), the web client gets a new session and says again the text of
    the turn it has not heard (docs/protocol.md): each sentence is heard whole once, in order."""
    relay = CuttableRelay(service.port)
    try:
        first = page.evaluate(
            "async (url) => (await window.sesame.connect(url)).session_id", f"ws://127.0.0.1:{relay.port}/ws"
        )
        page.evaluate("(text) => window.sesame.speak(text)", PARAGRAPH)
        wait(page, "() => window.sesame.stats.framesReceived > 0", 12 * T)
        assert stats(page)["turns"] == 0  # mid-turn
        page.evaluate("() => { window.sesame._resumeToken = 'not-this-sessions-token'; }")
        relay.cut()
        wait(page, TURN_PLAYED, 24 * T, arg=1)
        session = page.evaluate("() => window.sesame.session")
        assert session["resumed"] is False and session["session_id"] != first
        assert page.evaluate("() => window.sesame.reconnects") == 1
        whole = page.evaluate("() => window.sesame.sentences.filter((r) => r.done).map((r) => r.text)")
        assert whole == SENTENCES  # each once, in order: the half-heard one again from its start
    finally:
        relay.close()
