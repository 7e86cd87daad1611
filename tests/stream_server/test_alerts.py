"""Alert policy (pure, table-driven) and the webhook sender against a real HTTP receiver on loopback,
driven by a deadline loop as the monitor drives it (its retry core: test_delivery.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.deadlines import DeadlineLoop
from stream_server.monitoring.alerts import Alert, AlertConfig, AlertCore
from stream_server.monitoring.delivery import DeliveryCore
from stream_server.monitoring.webhook import Outcome, WebhookSender
from tests.conftest import T


def test_primary_down_fires_only_after_alert_after_then_recovers() -> None:
    core = AlertCore(AlertConfig(alert_after_s=30.0))
    assert core.primary(False, 1000.0, "last_will") == []
    assert core.next_deadline() == 1030.0
    assert core.handle_timer(1029.9) == []
    (alert,) = core.handle_timer(1030.0)
    assert (alert.key, alert.state, alert.kind) == ("primary_down", "firing", "primary_down")
    assert "primary voice" in alert.text and "last_will" in alert.text
    assert core.next_deadline() is None
    assert core.handle_timer(1100.0) == []  # deduplicated
    assert core.primary(False, 1100.0) == []
    (rec,) = core.primary(True, 1200.0)
    assert rec.state == "resolved" and ":large_green_circle:" in rec.text
    assert ("lasted", "200 s") in rec.details


def test_a_short_outage_sends_nothing_not_even_a_recovery() -> None:
    core = AlertCore(AlertConfig(alert_after_s=30.0))
    core.primary(False, 0.0)
    assert core.primary(True, 10.0) == []
    assert core.handle_timer(40.0) == []
    assert core.next_deadline() is None


@pytest.mark.parametrize(("percent", "fires"), [(99.95, False), (99.9, False), (99.89, True), (50.0, True)])
def test_uptime_below_target(percent: float, fires: bool) -> None:
    core = AlertCore(AlertConfig(uptime_target=99.9))
    out = core.uptime(percent, 0.0)
    assert bool(out) is fires
    if fires:
        assert out[0].kind == "uptime_low" and f"{percent:.3f}%" in out[0].text
        assert core.uptime(percent - 1, 1.0) == []
        assert [a.state for a in core.uptime(99.95, 2.0)] == ["resolved"]


def test_breaker_and_crash_loop_keys_are_separate_and_deduplicated() -> None:
    core = AlertCore()
    a = core.breaker("edge-tts", False, "timeout", 0.0)
    b = core.breaker("elevenlabs", False, "http_500", 0.0)
    assert [x.key for x in a + b] == ["breaker_open:edge-tts", "breaker_open:elevenlabs"]
    assert core.breaker("edge-tts", False, "timeout", 1.0) == []
    loop = core.crash_loop("worker", "bark-1", looping=True, restarts=5, reason="exit_1", now=2.0)
    assert loop[0].kind == "crash_loop" and ("restarts", "5") in loop[0].details
    assert core.crash_loop("worker", "bark-1", looping=True, restarts=6, reason="exit_1", now=3.0) == []
    assert [x.state for x in core.breaker("edge-tts", True, "probe_ok", 4.0)] == ["resolved"]
    assert core.breaker("edge-tts", True, "probe_ok", 5.0) == []
    assert sorted(k for k, _, _ in core.active()) == ["breaker_open:elevenlabs", "crash_loop:worker:bark-1"]


def test_rate_limit_holds_back_a_storm_and_says_so() -> None:
    core = AlertCore(AlertConfig(burst=2, refill_s=60.0))
    sent = [a for i in range(5) for a in core.breaker(f"t{i}", False, "x", 0.0)]
    assert len(sent) == 2 and core.suppressed == 3
    # a refused alert has no recovery notice; the next one that goes out names what was held back
    assert core.breaker("t3", True, "ok", 1.0) == []
    later = core.breaker("t9", False, "x", 60.0)
    assert len(later) == 1 and later[0].suppressed_before == 3
    assert "held back" in later[0].text


def test_a_rate_limited_primary_alert_does_not_spin_the_timer() -> None:
    core = AlertCore(AlertConfig(burst=1, alert_after_s=1.0))
    core.breaker("x", False, "x", 0.0)
    core.primary(False, 0.0)
    assert core.handle_timer(1.0) == []
    assert core.next_deadline() is None


def test_payload_is_slack_compatible_json() -> None:
    alert = Alert("primary_down", "primary_down", "firing", 0.0, "Maya lost her voice", (("reason", "x"),))
    body = json.loads(json.dumps(alert.payload("gw-1")))
    assert isinstance(body["text"], str) and body["text"].startswith(":red_circle:")
    assert body["alert"]["at"] == "1970-01-01T00:00:00+00:00"
    assert body["alert"]["details"] == {"reason": "x"} and body["source"] == "gw-1"


# ---- the sender against a real HTTP server on loopback ------------------------------------------


class Receiver:
    """A minimal HTTP/1.1 webhook receiver: answers the scripted statuses in turn, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, object]] = []
        self.attempts = 0
        self.got = asyncio.Event()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        body = await reader.readexactly(length)
        self.attempts += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(json.loads(body))
            self.got.set()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def receiving(statuses: list[int]) -> AsyncIterator[Receiver]:
    """Started in the test's own event loop (the fixtures' loop is the session's)."""
    r = Receiver(statuses)
    r.server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    async with r.server:
        yield r


class Outcomes:
    """The sender's outcome callback, with an event per outcome to wait on."""

    def __init__(self) -> None:
        self.seen: list[Outcome] = []
        self.events: dict[str, asyncio.Event] = {}

    def __call__(self, outcome: Outcome) -> None:
        self.seen.append(outcome)
        self.event(outcome).set()

    def event(self, outcome: str) -> asyncio.Event:
        return self.events.setdefault(outcome, asyncio.Event())

    async def wait(self, outcome: str) -> None:
        async with asyncio.timeout(T):
            await self.event(outcome).wait()
        self.event(outcome).clear()


@contextlib.asynccontextmanager
async def sending(url: str, outcomes: Outcomes, **core: Any) -> AsyncIterator[WebhookSender]:
    """A running sender and the deadline loop that wakes it (the monitor's, in the gateway)."""

    def next_deadline() -> float | None:
        return sender.next_deadline()

    def handle_timer(now: float) -> None:
        sender.handle_timer(now)

    loop = DeadlineLoop(next_deadline, handle_timer, time.monotonic)
    sender = WebhookSender(
        url, clock=time.monotonic, wake=loop.wake, core=DeliveryCore(**core), on_outcome=outcomes
    )
    async with sender:
        task = asyncio.create_task(loop.run())
        try:
            yield sender
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_an_alert_is_delivered_with_retries_after_server_errors() -> None:
    outcomes = Outcomes()
    alert = AlertCore().breaker("edge-tts", False, "timeout", 0.0)[0]
    async with (
        receiving([500, 503]) as receiver,
        sending(receiver.url, outcomes, backoff_s=0.01) as sender,
    ):
        sender.send(alert)  # returns at once
        await outcomes.wait("delivered")
    assert receiver.attempts == 3
    assert outcomes.seen == ["retried", "retried", "delivered"]
    assert receiver.bodies[0]["alert"]["key"] == "breaker_open:edge-tts"  # type: ignore[index]
    assert "edge-tts" in str(receiver.bodies[0]["text"])
    assert sender.delivered == [alert]


async def test_a_refusing_receiver_is_not_retried_and_nothing_blocks() -> None:
    outcomes = Outcomes()
    core = AlertCore()
    async with (
        receiving([400]) as receiver,
        sending(receiver.url, outcomes, backoff_s=0.01) as sender,
    ):
        sender.send(core.breaker("a", False, "x", 0.0)[0])
        await outcomes.wait("failed")
        sender.send(core.breaker("b", False, "x", 0.0)[0])
        await outcomes.wait("delivered")
    assert outcomes.seen == ["failed", "delivered"]
    assert receiver.attempts == 2


async def test_an_unreachable_webhook_gives_up_after_its_attempts() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    outcomes = Outcomes()
    async with sending(f"http://127.0.0.1:{port}/", outcomes, max_attempts=3, backoff_s=0.01) as sender:
        sender.send(AlertCore().breaker("a", False, "x", 0.0)[0])
        await outcomes.wait("failed")
    assert outcomes.seen == ["retried", "retried", "failed"]


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    outcomes: list[Outcome] = []
    sender = WebhookSender(
        "http://127.0.0.1:9/",
        clock=time.monotonic,
        wake=lambda: None,
        core=DeliveryCore(queue_size=2),
        on_outcome=outcomes.append,
    )
    core = AlertCore()
    for name in "abc":  # not started: nothing drains the queue
        sender.send(core.breaker(name, False, "x", 0.0)[0])
    assert outcomes == ["dropped"]
    assert [a.key for a in sender.core.queue] == ["breaker_open:b", "breaker_open:c"]
    assert sender.next_deadline() is None  # not started: it asks for no wake-up


# ---- the whole path: a worker dies, the webhook hears it, and hears the recovery -------------------


class HookServer:
    """A real HTTP webhook receiver on loopback, in a thread (the stack under test is synchronous)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.posts: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                posts.put((time.monotonic(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="hook").start()

    def next(self, key: str, state: str, timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            at, body = self.posts.get(timeout=max(0.0, deadline - time.monotonic()))
            if body["alert"]["key"] == key and body["alert"]["state"] == state:
                return at, body

    def settle(self, quiet: float) -> None:
        """Take what came so far; if a firing notice has no recovery yet, wait for it."""
        firing: set[str] = set()
        while True:
            try:
                _, body = self.posts.get(timeout=quiet if firing else 0.0)
            except queue.Empty:
                if firing:
                    raise AssertionError(f"no recovery for {firing}") from None
                return
            key, state = body["alert"]["key"], body["alert"]["state"]
            (firing.add if state == "firing" else firing.discard)(key)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dead_worker_reaches_the_webhook_and_so_does_its_recovery(tmp_path: Path) -> None:
    from broker.launcher import Mosquitto
    from tests.support.localstack import Stack

    hook = HookServer()
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_HEALTH_CHECK_INTERVAL": "500",
        "SESAME_ALERT_AFTER": "2000",
        "SESAME_ALERT_WEBHOOK": hook.url,
        "SESAME_STATE_DIR": str(tmp_path / "state"),
        "SESAME_CACHE_PRELOAD": "false",
    }
    try:
        with Mosquitto() as broker, Stack(env, broker=broker, start_timeout=6 * T) as stack:
            stack.start_worker("w1", engine="espeak-ng")
            stack.gateway.wait_for(
                lambda e: e.get("event") == "primary_voice" and e.get("up") is True, 4 * T, "primary up"
            )
            hook.settle(T)  # the start-up (no worker yet) may have paged and recovered: not this test's
            killed = time.monotonic()
            stack.workers["w1"].signal(signal.SIGKILL)
            fired_at, fired = hook.next("primary_down", "firing", 4 * T)
            assert fired_at - killed >= 2.0  # not before SESAME_ALERT_AFTER: a blip pages nobody
            assert fired["text"].startswith(":red_circle:") and "primary voice" in fired["text"]
            assert fired["alert"]["details"]["down_for"].endswith(" s")
            stack.start_worker("w1", engine="espeak-ng")
            _, recovered = hook.next("primary_down", "resolved", 4 * T)
            assert recovered["text"].startswith(":large_green_circle:")
            assert "speaking again" in recovered["alert"]["summary"]
            delay = fired_at - killed
            stack.gateway.wait_for(lambda e: e.get("event") == "alert_delivered", T, "delivery logged")
    finally:
        hook.close()
    print(f"alert POST {delay:.2f} s after the kill (SESAME_ALERT_AFTER 2 s, interval 0.5 s)")


def test_an_alert_open_at_a_restart_is_not_sent_again_and_still_recovers() -> None:
    before = AlertCore(AlertConfig(alert_after_s=30.0))
    before.primary(False, 0.0, "last_will")
    before.handle_timer(30.0)
    before.breaker("edge-tts", False, "timeout", 31.0)
    saved = before.open_alerts()
    assert sorted(a.key for a in saved) == ["breaker_open:edge-tts", "primary_down"]

    after = AlertCore(AlertConfig(alert_after_s=30.0))
    after.restore(saved)
    assert after.primary(False, 100.0) == [] and after.handle_timer(200.0) == []
    assert after.breaker("edge-tts", False, "timeout", 101.0) == []
    (rec,) = after.primary(True, 300.0)
    assert rec.state == "resolved" and ("lasted", "300 s") in rec.details
