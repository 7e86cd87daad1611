"""The gateway's CPU slice request (broker/cpu_slice.py): the kernel's answer, read back with
sched_getattr, on this machine's kernel (Linux 6.12+ takes slice requests)."""

from __future__ import annotations

import threading

import pytest

from broker import cpu_slice
from broker.errors import ConfigError
from stream_server.config import GatewayConfig
from tests.conftest import Service


def in_a_thread(slice_us: int) -> tuple[int, int]:
    """(before, after) of a request made in a thread of its own: the test's thread keeps its slice."""
    seen: list[int] = []

    def run() -> None:
        seen.append(cpu_slice.slice_us())
        cpu_slice.request_slice(slice_us)
        seen.append(cpu_slice.slice_us())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0], seen[1]


def test_a_requested_slice_is_the_one_the_kernel_runs() -> None:
    before, after = in_a_thread(250)
    assert after == 250 and before != 250


@pytest.mark.parametrize("slice_us", [0, 99, 100_001])
def test_a_slice_outside_the_kernels_range_is_refused_before_asking(slice_us: int) -> None:
    with pytest.raises(ValueError, match="100-100000"):
        cpu_slice.request_slice(slice_us)


def test_the_setting_takes_zero_or_the_kernels_range() -> None:
    assert GatewayConfig.from_env({}).cpu_slice_us == 100
    assert GatewayConfig.from_env({"SESAME_CPU_SLICE_US": "0"}).cpu_slice_us == 0
    with pytest.raises(ConfigError, match="SESAME_CPU_SLICE_US"):
        GatewayConfig.from_env({"SESAME_CPU_SLICE_US": "50"})


def test_the_gateway_process_runs_with_its_short_slice(espeak_gateway: Service) -> None:
    assert cpu_slice.slice_us(espeak_gateway.gateway.pid) == GatewayConfig.from_env({}).cpu_slice_us
