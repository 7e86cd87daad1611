"""A short CPU slice for a process whose work is forwarding (the gateway, a worker's I/O process).

Linux's fair scheduler (EEVDF, 6.6+) lets a running task keep its CPU until its slice is used
(1.4 ms on this 2-core machine) before a task it woke may run there. A socket write wakes the
reader on the writer's own CPU (a "sync" wakeup: the writer is expected to sleep soon), so while
the gateway forwards a burst of audio (a worker's sentence arriving faster than real time, one
MQTT message every ~0.15 ms) the process its first frame woke, nginx in front of it or a local
client, waits up to a whole slice for the gateway to stop: ``perf sched`` showed 1-3 ms of
scheduling delay at the first audio frame (docs/benchmarks.md, issue 20). Since 6.12 a task may
ask for a shorter slice (``sched_attr.sched_runtime`` for SCHED_OTHER, 0.1-100 ms): its turn ends
sooner when others wait, and it runs sooner when it wakes. No privilege is needed; a kernel
without slice requests refuses it (EINVAL), which costs nothing but the gain.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
SYS_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}
# struct sched_attr, SCHED_ATTR_SIZE_VER1: size, policy, flags, nice, priority, runtime, deadline,
# period, util_min, util_max.
_ATTR = struct.Struct("IIQiIQQQII")
SCHED_OTHER = 0
LEAST_US, MOST_US = 100, 100_000  # the kernel's range for a slice request


def _syscall(numbers: dict[str, int]) -> tuple[ctypes.CDLL, int]:
    number = numbers.get(os.uname().machine)
    if not sys.platform.startswith("linux") or number is None:
        raise OSError(f"no sched_setattr on {sys.platform}/{os.uname().machine}")
    return ctypes.CDLL(None, use_errno=True), number


def request_slice(slice_us: int) -> None:
    """Ask for a ``slice_us`` slice for this thread (the event loop's: call it before starting
    threads, which inherit it). OSError when the kernel refuses."""
    if not LEAST_US <= slice_us <= MOST_US:
        raise ValueError(f"a slice is {LEAST_US}-{MOST_US} us, not {slice_us}")
    libc, number = _syscall(SYS_SCHED_SETATTR)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    packed = _ATTR.pack(_ATTR.size, SCHED_OTHER, 0, nice, 0, slice_us * 1000, 0, 0, 0, 0)
    attr = ctypes.create_string_buffer(packed)
    if libc.syscall(number, 0, attr, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_setattr: {os.strerror(err)}")


def slice_us(pid: int = 0) -> int:
    """The slice ``pid`` (0: this thread) runs with, as the kernel reports it."""
    libc, number = _syscall(SYS_SCHED_GETATTR)
    attr = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(number, pid, attr, _ATTR.size, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_getattr: {os.strerror(err)}")
    return int(_ATTR.unpack(attr.raw)[5] // 1000)
