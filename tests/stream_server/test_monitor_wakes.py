"""The monitor's deadline task is woken only when a probe started, ended or was given up: every
listener's job asks the monitor to preempt a probe, and waking the task for nothing then cost the
gateway's CPU while that job's first audio was being made (issue 20)."""

from __future__ import annotations

from pathlib import Path

from broker.settings import MqttNodes
from stream_server.config import MonitorConfig
from stream_server.monitoring.metrics import Metrics
from stream_server.monitoring.monitor import Monitor
from stream_server.monitoring.probes import PRIMARY


class IdleGateway:
    def ready_workers(self) -> list[tuple[str, bool]]:
        return [("bark-1", False)]

    def busy_tiers(self) -> set[str]:
        return set()


def monitor(tmp_path: Path) -> Monitor:
    return Monitor(
        MonitorConfig(state_dir=str(tmp_path)), interval_s=30.0, probe_timeout_s=5.0, paths=(PRIMARY,),
        engines={}, voice="maya", mqtt_url=MqttNodes.parse("mqtt://monitor@127.0.0.1:1"),
        gateway_id="gw-1", metrics=Metrics(), view=IdleGateway(), clock=lambda: 100.0,
    )  # fmt: skip


def test_a_listeners_job_with_no_probe_running_leaves_the_deadline_task_asleep(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    mon.listener_needs(PRIMARY)
    mon.sentence(PRIMARY, True)  # traffic outside a round: counted, nothing to decide
    assert not mon.deadlines.woken


def test_a_listeners_job_that_preempts_a_running_probe_wakes_it(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    mon.probes.start(100.0)
    mon.probes.handle_timer(100.0)  # the round begins: a probe in flight on the primary
    assert not mon.deadlines.woken
    mon.listener_needs(PRIMARY)
    assert mon.deadlines.woken
