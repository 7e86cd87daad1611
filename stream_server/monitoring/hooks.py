"""Turns what the gateway's scheduler decides (and the heartbeats it reads) into monitor events.

The gateway calls ``observe(monitor, item)`` for every scheduler action it carries out and every
heartbeat it accepts; this is the one place that knows both vocabularies, so neither the
scheduler nor the monitor imports the other.
"""

from __future__ import annotations

from broker.messages import Heartbeat
from stream_server.core.actions import (
    WORKERS,
    Action,
    Completed,
    FailedOver,
    SendJob,
    TierChanged,
    WorkerChanged,
)
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.probes import PRIMARY


def path_of(engine_or_tier: str) -> str:
    """The health path of an engine or tier name (Bark and the worker pool are the primary)."""
    return PRIMARY if engine_or_tier in (WORKERS, "bark") else engine_or_tier


def observe(monitor: Monitor, item: Action | Heartbeat, *, worker_up: bool = False) -> None:
    match item:
        case Heartbeat() as hb:
            monitor.heartbeat(hb, worker_up)
        case SendJob(sentence=s) if not s.background:
            monitor.listener_needs(PRIMARY)
        case Completed(tier=tier):  # a preloaded phrase Bark spoke is Bark speaking too
            monitor.sentence(path_of(tier), True)
        case FailedOver(sentence=s, from_engine=from_engine) if not s.background:
            monitor.sentence(path_of(from_engine), False)
        case TierChanged(tier=tier, available=available, reason=reason):
            monitor.tier_changed(tier, available, reason)
        case WorkerChanged(change=change):
            monitor.worker_changed(change.worker_id, change.up, change.reason)
        case _:
            pass
