"""The worker's model retry core: when a load is due, table-driven with ``now`` passed in."""

from __future__ import annotations

import pytest

from synth_worker.model_retry import Load, ModelRetry


def test_the_first_load_is_due_at_once_and_nothing_while_it_runs() -> None:
    r = ModelRetry(5.0)
    assert r.next_deadline() is None and r.handle_timer(100.0) == []
    r.start(10.0)
    assert r.next_deadline() == 10.0
    assert r.handle_timer(9.0) == []
    assert r.handle_timer(10.0) == [Load(1)]
    assert r.next_deadline() is None
    r.unusable(11.0)  # a load runs already
    assert r.next_deadline() is None


@pytest.mark.parametrize(
    ("outcomes", "retry_s", "deadlines", "attempts"),
    [
        (["ok"], 5.0, [None], [1]),
        (["fail", "ok"], 5.0, [5.0, None], [1, 2]),
        (["fail", "fail", "fail"], 2.0, [2.0, 4.0, 6.0], [1, 2, 3]),
        (["fail"], 0.0, [None], [1]),  # SESAME_MODEL_RETRY_MS=0: no retry
    ],
)
def test_a_failed_load_is_tried_again_after_retry_s(
    outcomes: list[str], retry_s: float, deadlines: list[float | None], attempts: list[int]
) -> None:
    r = ModelRetry(retry_s)
    r.start(0.0)
    now, seen, due = 0.0, [], []
    for outcome in outcomes:
        (load,) = r.handle_timer(now)
        seen.append(load.attempt)
        if outcome == "ok":
            r.loaded()
        else:
            r.failed(now)
        due.append(r.next_deadline())
        now = r.next_deadline() or now
    assert seen == attempts
    assert due == deadlines


def test_an_unusable_engine_is_loaded_again_at_once_counting_from_one() -> None:
    r = ModelRetry(5.0)
    r.start(0.0)
    r.handle_timer(0.0)
    r.failed(0.0)
    r.handle_timer(5.0)
    r.loaded()
    r.unusable(50.0)
    assert r.next_deadline() == 50.0
    assert r.handle_timer(50.0) == [Load(1)]


def test_after_giving_up_an_unusable_engine_is_not_retried() -> None:
    r = ModelRetry(0.0)
    r.start(0.0)
    r.handle_timer(0.0)
    assert r.failed(0.0) is None
    r.unusable(1.0)
    assert r.next_deadline() is None and r.gave_up
