"""The webhook's delivery core: order, retries with backoff, refusals, a bounded queue. Pure, ``now``
passed in."""

from __future__ import annotations

import pytest

from stream_server.monitoring.alerts import Alert, AlertCore
from stream_server.monitoring.delivery import (
    Delivered,
    DeliveryCore,
    Dropped,
    GaveUp,
    Post,
    Retrying,
)


def alert(name: str) -> Alert:
    return AlertCore().breaker(name, False, "x", 0.0)[0]


def core(**kw: object) -> DeliveryCore:
    return DeliveryCore(backoff_s=1.0, max_backoff_s=3.0, jitter=lambda: 1.0, **kw)  # type: ignore[arg-type]


def test_a_notice_is_posted_at_the_next_wake_up() -> None:
    c, a = core(), alert("a")
    assert c.next_deadline() is None
    assert c.send(a, 10.0) == []
    assert c.next_deadline() == 10.0
    assert c.handle_timer(9.9) == []
    assert c.handle_timer(10.0) == [Post(a, 1)]
    assert c.next_deadline() is None  # posting: nothing to wake for
    assert c.posted(None, 10.2) == [Delivered(a, 1)]
    assert c.next_deadline() is None


@pytest.mark.parametrize(
    ("errors", "max_attempts", "outcome", "waits"),
    [
        (["http_500", "http_503", None], 6, "delivered", [1.0, 2.0]),
        (["ConnectError"] * 5, 6, "retrying", [1.0, 2.0, 3.0, 3.0, 3.0]),  # backoff capped at 3 s
        (["http_500", "http_500", "http_500"], 3, "gave_up", [1.0, 2.0]),
        (["http_400"], 6, "gave_up", []),  # a refusal is not asked again
        (["http_429", None], 6, "delivered", [1.0]),  # too many requests: asked again
    ],
)
def test_retries(errors: list[str | None], max_attempts: int, outcome: str, waits: list[float]) -> None:
    c, a = core(max_attempts=max_attempts), alert("a")
    c.send(a, 0.0)
    now, seen, last = 0.0, [], None
    for attempt, error in enumerate(errors, 1):
        assert c.handle_timer(now) == [Post(a, attempt)]
        (last,) = c.posted(error, now)
        if isinstance(last, Retrying):
            seen.append(last.in_s)
            assert c.next_deadline() == now + last.in_s
            now += last.in_s
    assert seen == waits
    kind = {Delivered: "delivered", Retrying: "retrying", GaveUp: "gave_up"}[type(last)]
    assert kind == outcome


def test_notices_go_one_at_a_time_in_order() -> None:
    c, a, b = core(), alert("a"), alert("b")
    c.send(a, 0.0)
    assert c.handle_timer(0.0) == [Post(a, 1)]
    c.send(b, 0.1)  # a is being posted: b waits
    assert c.next_deadline() is None
    assert c.posted("http_500", 0.2) == [Retrying(a, 1, "http_500", 1.0)]
    assert c.handle_timer(1.2) == [Post(a, 2)]
    assert c.posted(None, 1.3) == [Delivered(a, 2)]
    assert c.next_deadline() == 1.3
    assert c.handle_timer(1.3) == [Post(b, 1)]


def test_a_full_queue_drops_the_oldest_waiting() -> None:
    c = core(queue_size=2)
    a, b, d = alert("a"), alert("b"), alert("d")
    c.send(a, 0.0)
    c.send(b, 0.0)
    assert c.send(d, 0.0) == [Dropped(a)]
    assert list(c.queue) == [b, d]
