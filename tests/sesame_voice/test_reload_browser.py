"""The web client in a real browser (Debian's chromium) across a gateway reload under ``up``:
the old gateway tells it to reconnect (1012), it reconnects by itself, and the next turn is heard."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import T
from tests.sesame_voice.test_up_supervised import Up
from tests.support.chromium import ARGS, CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make system-deps)")

TURNS_HEARD = """(n) => window.sesame.stats.turns >= n && window.sesame.stats.playerState === "idle"
  && window.sesame.stats.samplesPlayed > 0"""


def test_the_web_client_reconnects_after_a_reload_and_goes_on(tmp_path: Path, dev_model_dir: Path) -> None:
    up = Up(tmp_path / "run", dev_model_dir)
    try:
        up.wait(0, "gateway_listening", 12 * T)
        up.wait(0, "worker_change", 12 * T, worker_id="worker-1", up=True)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS
            )
            try:
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{up.port}/")
                page.wait_for_function("() => window.sesame && window.sesame.session", timeout=4 * T * 1000)
                page.evaluate("() => window.sesame.speak('Before the reload.')")
                page.wait_for_function(TURNS_HEARD, arg=1, timeout=12 * T * 1000)
                first = page.evaluate("() => window.sesame.session.session_id")
                mark = up.index()
                os.kill(up.proc.pid, signal.SIGHUP)
                up.wait(mark, "session_told_to_reconnect", 24 * T, session_id=first)
                page.wait_for_function("() => window.sesame.reconnects >= 1", timeout=6 * T * 1000)
                up.wait(mark, "reload_done", 12 * T)
                second = page.evaluate("() => window.sesame.session.session_id")
                page.evaluate("() => window.sesame.speak('After the reload.')")
                page.wait_for_function(TURNS_HEARD, arg=2, timeout=12 * T * 1000)
                engines = page.evaluate("() => window.sesame.sentences.map((s) => s.engine)")
            finally:
                context.close()
    finally:
        up.proc.stop(20)
    assert second != first
    assert engines and engines[-1] in {"bark", "espeak-ng"}
    assert errors == []
