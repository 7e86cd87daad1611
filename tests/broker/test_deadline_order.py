"""The one start order of jobs (broker/deadline_order.py), table by table."""

from __future__ import annotations

import pytest

from broker.deadline_order import Waiting, next_up, start_order


def w(session: str, need: float, chars: int = 10, arrived: int = 0) -> Waiting:
    return Waiting(session, need, chars, arrived)


# (waiting, now, served) -> sessions+arrival in start order
CASES = [
    ("empty", [], 0.0, {}, []),
    ("earliest need first", [w("a", 5.0, arrived=1), w("b", 2.0, arrived=2)], 0.0, {}, ["b2", "a1"]),
    (
        "a first sentence (needed now) before others' lookahead",
        [w("a", 4.0, arrived=1), w("a", 8.0, arrived=2), w("b", 0.0, arrived=3)],
        0.0,
        {},
        ["b3", "a1", "a2"],
    ),
    (
        "needs already past are all 'now': round robin, never served first",
        [w("a", 0.1, arrived=1), w("a", 0.2, arrived=2), w("b", 0.3, arrived=3)],
        1.0,
        {"a": 5},
        ["b3", "a1", "a2"],
    ),
    (
        "round robin: the session served longest ago",
        [w("a", 0.0, arrived=1), w("b", 0.0, arrived=2), w("c", 0.0, arrived=3)],
        1.0,
        {"a": 3, "b": 1, "c": 2},
        ["b2", "c3", "a1"],
    ),
    (
        "a session's jobs keep their order even if a later one is shorter",
        [w("a", 0.0, chars=50, arrived=1), w("a", 0.0, chars=5, arrived=2)],
        1.0,
        {},
        ["a1", "a2"],
    ),
    (
        "then the shorter text, then arrival",
        [w("a", 0.0, chars=50, arrived=1), w("b", 0.0, chars=5, arrived=2), w("c", 0.0, chars=5, arrived=3)],
        1.0,
        {},
        ["b2", "c3", "a1"],
    ),
]


@pytest.mark.parametrize(
    ("waiting", "now", "served", "order"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_start_order(waiting: list[Waiting], now: float, served: dict[str, int], order: list[str]) -> None:
    got = [f"{waiting[i].session_id}{waiting[i].arrived}" for i in start_order(waiting, now, served)]
    assert got == order
    if waiting:
        first = next_up(waiting, now, served)
        assert first is not None and f"{waiting[first].session_id}{waiting[first].arrived}" == order[0]
    else:
        assert next_up(waiting, now, served) is None


def test_one_greedy_session_cannot_hold_back_the_others() -> None:
    """Ten jobs of one session already needed, then one job each of three others: the others are
    served within the first four starts."""
    waiting = [w("greedy", 0.0, arrived=i) for i in range(10)]
    waiting += [w(s, 0.0, arrived=10 + i) for i, s in enumerate(("p1", "p2", "p3"))]
    order = [waiting[i].session_id for i in start_order(waiting, 1.0, {"greedy": 0})]
    assert set(order[:4]) == {"greedy", "p1", "p2", "p3"}
