"""/status in real Chromium, live over server-sent events; the main page's fallback notice; and the
history kept across a gateway restart.

The browser test checks what a person looks for: is Maya healthy, which workers are up and how fast,
which tiers and breakers, the uptime and this month's downtime budget, the TTFA chart, fallbacks by
engine, and the incidents; then a worker is killed and the page shows it without a reload.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from broker.launcher import Mosquitto
from tests.conftest import Service, T
from tests.support.chromium import ARGS, CHROMIUM
from tests.support.localstack import Stack

MS = int(T * 1000)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=T) as r:
        data: dict[str, Any] = json.load(r)
    return data


def tts(base: str, text: str) -> None:
    body = json.dumps({"text": text}).encode()
    req = urllib.request.Request(f"{base}/tts", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=6 * T) as r:
        assert r.status == 200 and len(r.read()) > 1000


@pytest.fixture
def stack(dev_model_dir: Path, tmp_path: Path) -> Iterator[Service]:
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_HEALTH_CHECK_INTERVAL": "1000",
        "SESAME_STATE_DIR": str(tmp_path / "state"),
    }
    with Mosquitto() as broker:
        svc = Service(broker, dev_model_dir, env)
        try:
            svc.start_worker("bark-1")
            yield svc
        finally:
            svc.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (make system-deps)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            yield context
        finally:
            context.close()


def text(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def worker_figures(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=T) as r:
        text = r.read().decode()
    return {
        "up": metric(text, "sesame_worker_up", worker="bark-1"),
        "load": metric(text, "sesame_worker_model_load_seconds", worker="bark-1"),
        "batch": metric(text, "sesame_worker_batch_size", worker="bark-1"),
        "rtf": metric(text, "sesame_worker_rtf", worker="bark-1"),
        "semantic": metric(text, "sesame_worker_stage_seconds", worker="bark-1", stage="semantic"),
        "codec": metric(text, "sesame_worker_stage_seconds", worker="bark-1", stage="codec"),
    }


def test_status_page_shows_the_service_and_follows_a_worker_death_live(stack: Service, browser: Any) -> None:
    tts(stack.http_url, "Hello there, this is Maya.")  # one TTFA point for the chart
    # the worker's own figures reach the gateway's /metrics through its heartbeats
    stack.gateway.wait_for(
        lambda e: e.get("event") == "primary_voice" and e.get("up") is True, 4 * T, "probe"
    )
    # the probe's job ended on bark-1; a heartbeat after it carries its batch, pace and stage
    # times (they come as the job starts and ends, a heartbeat interval later): wait for that
    # condition, within a deadline
    deadline = time.monotonic() + 4 * T
    wanted = ("batch", "rtf", "semantic", "codec")
    while (
        min((figures := worker_figures(stack.http_url))[k] for k in wanted) <= 0
        and time.monotonic() < deadline
    ):
        threading.Event().wait(0.05)
    assert figures["up"] == 1 and figures["load"] > 0 and figures["batch"] >= 1
    assert figures["rtf"] > 0 and figures["semantic"] > 0 and figures["codec"] > 0
    page: Page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{stack.http_url}/status")
    page.wait_for_function("() => window.statusPage && window.statusPage.updates >= 1", timeout=4 * MS)

    # what a person looks for while all is well
    page.wait_for_function(
        "() => document.getElementById('overall').textContent === 'healthy'", timeout=4 * MS
    )
    assert text(page, "#voice-now") == "Maya is speaking with her primary voice (Bark)."
    worker = page.locator("#workers tr[data-worker='bark-1']")
    assert worker.locator("[data-field=state]").inner_text() == "ready"
    assert [r.get_attribute("data-tier") for r in page.locator("#tiers tbody tr").all()] == [
        "workers",
        "espeak-ng",
    ]
    assert page.locator("#tiers tr[data-tier='espeak-ng'] [data-field=breaker]").inner_text() == "closed"
    page.wait_for_function(
        "() => document.getElementById('uptime-24h').textContent.endsWith('%')", timeout=4 * MS
    )
    assert text(page, "#budget").endswith("min")
    assert "budget at 99.9%" in text(page, "#budget-label")
    page.wait_for_function(
        "() => Number(document.getElementById('ttfa-chart').dataset.points) >= 1", timeout=4 * MS
    )
    page.wait_for_function(
        "() => document.querySelector(\"#tiers tr[data-tier='workers'] [data-field=probe]\").textContent"
        ".startsWith('ok')",
        timeout=4 * MS,
    )
    assert page.locator("#live").inner_text().startswith("live")

    # kill the worker: the open page follows, with no reload
    page.evaluate("() => { window.__samePage = true; }")
    updates = page.evaluate("() => window.statusPage.updates")
    stack.workers["bark-1"].signal(signal.SIGKILL)
    page.wait_for_function(
        "() => document.querySelector(\"#workers tr[data-worker='bark-1'] [data-field=state]\")"
        ".textContent === 'offline'",
        timeout=4 * MS,
    )
    page.wait_for_function(
        "() => document.getElementById('overall').textContent === 'degraded'", timeout=4 * MS
    )
    assert "fallback voice (espeak-ng)" in text(page, "#voice-now")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#incidents li.fault')]"
        ".some((li) => li.textContent.includes('worker bark-1 went down'))",
        timeout=4 * MS,
    )
    assert page.evaluate("() => window.__samePage === true")
    assert page.evaluate("() => window.statusPage.updates") > updates

    # a sentence now comes from espeak-ng: fallbacks by engine
    tts(stack.http_url, "Still here.")
    page.wait_for_function(
        "() => !!document.querySelector(\"#fallbacks tr[data-engine='espeak-ng']\")", timeout=4 * MS
    )

    # the main page says plainly that Maya speaks with a fallback voice, and why
    main = browser.new_page()
    main.on("pageerror", lambda exc: errors.append(str(exc)))
    main.goto(f"{stack.http_url}/")
    notice = main.locator("#voice-notice")
    notice.wait_for(state="visible", timeout=4 * MS)
    assert (
        notice.inner_text()
        == "Maya is speaking with a fallback voice (espeak-ng) because no worker is ready."
    )
    assert errors == []


def test_history_survives_a_gateway_restart(tmp_path: Path) -> None:
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_HEALTH_CHECK_INTERVAL": "200",
        "SESAME_STATE_DIR": str(tmp_path / "state"),
        "SESAME_CACHE_PRELOAD": "false",
    }
    with Mosquitto() as broker:
        with Stack(env, broker=broker, start_timeout=6 * T) as first:
            first.start_worker("w1", engine="espeak-ng")
            first.gateway.wait_for(
                lambda e: e.get("event") == "primary_voice" and e.get("up") is True, 4 * T, "primary voice up"
            )
            first.gateway.wait_for(lambda e: e.get("event") == "worker_change", T, "the worker's incident")
            before = get_json(f"{first.http_url}/api/status")
        assert before["incidents"] and before["uptime"]["workers"]["1h"] is not None
        with Stack(env, broker=broker, start_timeout=6 * T) as second:
            after = get_json(f"{second.http_url}/api/status")
            metrics = get_json(f"{second.http_url}/api/monitoring/voice-metrics")
            later = get_json(f"{second.http_url}/api/status")
    earlier = {(i["at"], i["text"]) for i in before["incidents"]}
    assert earlier <= {(i["at"], i["text"]) for i in after["incidents"]}
    assert after["uptime"]["workers"]["1h"] is not None
    # The same history behind both: the metrics' figure is the status' at some moment between the
    # two reads (the window moves on every 200 ms health sample: with no worker it only falls).
    low, high = sorted((after["uptime"]["workers"]["1h"], later["uptime"]["workers"]["1h"]))
    assert low <= metrics["sesame"]["uptimeWindows"]["1h"] <= high
    assert metrics["sesame"]["downtimeThisMonth"]["budgetMinutes"] > 0


def test_a_failing_tier_probe_opens_its_breaker_before_a_listener_meets_it(tmp_path: Path) -> None:
    from broker.launcher import free_port

    env = {
        "SESAME_TIERS": "workers,edge-tts,espeak-ng",
        "SESAME_EDGE_TTS_ENDPOINT": f"ws://127.0.0.1:{free_port()}/edge",  # nothing listens there
        "SESAME_HEALTH_CHECK_INTERVAL": "300",
        "SESAME_STATE_DIR": str(tmp_path / "state"),
    }
    with Stack(env, start_timeout=6 * T) as stack:
        stack.gateway.wait_for(
            lambda e: e.get("event") == "tier_availability" and e.get("tier") == "edge-tts",
            4 * T,
            "edge-tts down",
        )
        status = get_json(f"{stack.http_url}/api/status")
    edge = next(t for t in status["tiers"] if t["tier"] == "edge-tts")
    assert (edge["available"], edge["breaker"]) == (False, "open")
    assert edge["lastProbe"]["ok"] is False
    assert status["voice"]["speakingWith"] == "espeak-ng"
    assert any("edge-tts is unavailable" in i["text"] for i in status["incidents"])
