"""What the kernel says about a process in ``/proc/PID/stat`` (proc(5)): for the tests and benches
that ask about processes they did not start themselves, or about their CPU time and priority."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

# Indices into ``stat_fields``: the fields after the command, as proc(5) numbers them from 3.
STATE, PARENT, USER_TICKS, SYSTEM_TICKS, NICE = 0, 1, 11, 12, 16


def stat_fields(stat: Path) -> list[str]:
    """The fields of a ``stat`` file after the command, which may itself hold spaces and ")"."""
    return stat.read_text().rsplit(")", 1)[1].split()


def every_process() -> dict[int, list[str]]:
    """pid -> ``stat_fields`` of every process now (one that ends while read is left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = stat_fields(entry / "stat")
            except OSError:
                continue
    return found


def children_of(parents: Collection[int]) -> dict[int, int]:
    """child pid -> parent pid, for every process now whose parent is one of ``parents``."""
    return {
        pid: parent for pid, fields in every_process().items() if (parent := int(fields[PARENT])) in parents
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running (or not yet reaped) process."""
    return ticks_to_seconds(stat_fields(Path(f"/proc/{pid}/stat")))


def ticks_to_seconds(fields: list[str]) -> float:
    return (int(fields[USER_TICKS]) + int(fields[SYSTEM_TICKS])) / os.sysconf("SC_CLK_TCK")


def thread_nices(pid: int) -> list[int]:
    """The nice of each thread of ``pid``."""
    return [int(stat_fields(stat)[NICE]) for stat in Path(f"/proc/{pid}/task").glob("*/stat")]
