"""The operator's tier switch (core/tier_switch.py) and what the scheduler does with it. Pure."""

from __future__ import annotations

import pytest

from stream_server.core.actions import WORKERS, RunLocal, SendJob
from stream_server.core.scheduler import Scheduler
from stream_server.core.tier_switch import TierSwitch, TierSwitchError, remap_index
from tests.stream_server.test_scheduler import CFG, hb, of, sentence

TIERS = (WORKERS, "edge-tts", "espeak-ng")


def switched(switch: TierSwitch, *workers: str) -> Scheduler:
    s = Scheduler(CFG)
    for w in workers:
        s.heartbeat(hb(w), 0.0)
    s.set_tiers(switch.order(), frozenset(switch.disabled))
    return s


@pytest.mark.parametrize(
    ("commands", "enabled"),
    [
        ([], TIERS),
        ([("prefer", "espeak-ng")], ("espeak-ng", WORKERS, "edge-tts")),
        ([("disable", WORKERS)], ("edge-tts", "espeak-ng")),
        ([("disable", WORKERS), ("enable", WORKERS)], TIERS),
        ([("prefer", "edge-tts"), ("disable", "edge-tts")], (WORKERS, "espeak-ng")),
        ([("disable", "edge-tts"), ("prefer", "edge-tts")], ("edge-tts", WORKERS, "espeak-ng")),
        ([("prefer", "espeak-ng"), ("disable", WORKERS), ("reset", None)], TIERS),
    ],
)
def test_commands_give_the_order_tried(
    commands: list[tuple[str, str | None]], enabled: tuple[str, ...]
) -> None:
    switch = TierSwitch(TIERS)
    for op, tier in commands:
        assert switch.apply(op, tier)
    assert switch.enabled() == enabled
    assert switch.view()["order"] == list(enabled)


@pytest.mark.parametrize(
    ("op", "tier", "code"),
    [
        ("promote", WORKERS, "unknown_op"),
        ("prefer", "elevenlabs", "unknown_tier"),
        ("disable", None, "unknown_tier"),
    ],
)
def test_bad_commands_are_typed_errors(op: str, tier: str | None, code: str) -> None:
    with pytest.raises(TierSwitchError) as err:
        TierSwitch(TIERS).apply(op, tier)
    assert err.value.code == code


def test_the_last_enabled_tier_cannot_be_disabled() -> None:
    switch = TierSwitch(TIERS)
    switch.apply("disable", WORKERS)
    switch.apply("disable", "edge-tts")
    with pytest.raises(TierSwitchError) as err:
        switch.apply("disable", "espeak-ng")
    assert err.value.code == "last_tier"
    assert switch.enabled() == ("espeak-ng",)


def test_it_persists_and_drops_what_is_no_longer_configured() -> None:
    switch = TierSwitch(TIERS)
    switch.apply("prefer", "espeak-ng")
    switch.apply("disable", "edge-tts")
    again = TierSwitch.from_json(TIERS, switch.to_json())
    assert (again.preferred, again.disabled) == ("espeak-ng", {"edge-tts"})
    fewer = TierSwitch.from_json((WORKERS, "edge-tts"), switch.to_json())
    assert (fewer.preferred, fewer.disabled, fewer.enabled()) == (None, {"edge-tts"}, (WORKERS,))
    everything = TierSwitch.from_json(
        TIERS, '{"preferred": null, "disabled": ["workers", "edge-tts", "espeak-ng"]}'
    )
    assert everything.enabled() == TIERS  # a file never leaves no tier at all
    with pytest.raises(ValueError, match="not a tier switch"):
        TierSwitch.from_json(TIERS, "[1, 2]")


def test_preferring_a_fallback_sends_the_next_sentence_there() -> None:
    switch = TierSwitch(TIERS)
    switch.apply("prefer", "espeak-ng")
    s = switched(switch, "w1")
    actions = s.submit(sentence(), 0.0)
    assert not of(actions, SendJob)
    assert [a.tier for a in of(actions, RunLocal)] == ["espeak-ng"]
    assert s.available_tiers(0.0) == ["espeak-ng", WORKERS, "edge-tts"]


def test_disabling_the_workers_skips_them_and_enabling_brings_them_back() -> None:
    switch = TierSwitch(TIERS)
    switch.apply("disable", WORKERS)
    s = switched(switch, "w1")
    assert [a.tier for a in of(s.submit(sentence(0), 0.0), RunLocal)] == ["edge-tts"]
    assert WORKERS not in s.available_tiers(0.0)
    switch.apply("enable", WORKERS)
    s.set_tiers(switch.order(), frozenset(switch.disabled))
    [job] = of(s.submit(sentence(1, turn=1), 0.0), SendJob)
    assert job.worker_id == "w1"


def test_a_sentence_in_flight_keeps_its_tier_when_the_order_changes() -> None:
    s = switched(TierSwitch(TIERS), "w1")
    [job] = of(s.submit(sentence(), 0.0), SendJob)
    switch = TierSwitch(TIERS)
    switch.apply("prefer", "espeak-ng")
    s.set_tiers(switch.order(), frozenset(switch.disabled))
    task = s.tasks[job.job_id]
    assert s.tiers[task.tier_index] == WORKERS
    # it fails on the worker: it goes on down the new order from there, not back to the top
    actions = s.failed(job.job_id, "engine_error", 0.1)
    assert [a.tier for a in of(actions, RunLocal)] == ["edge-tts"]


def test_remap_index() -> None:
    old = (WORKERS, "edge-tts", "espeak-ng")
    assert remap_index(old, ("espeak-ng", WORKERS, "edge-tts"), 1) == 2
    assert remap_index(old, (WORKERS, "espeak-ng"), 1) == 1  # gone: the next one it had
    assert remap_index(old, (WORKERS,), 1) == 1  # nothing after it: past the end
    assert remap_index(old, old, 3) == 3
