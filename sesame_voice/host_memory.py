"""What ``up`` reads of this host's memory, for a reload's surge (``capacity.reload_surge``): the
memory available (``/proc/meminfo``) and a process's resident memory with its children's
(``/proc/PID/status``, ``/proc/PID/task/*/children``). None where ``/proc`` does not say."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def available_bytes(proc: Path = PROC) -> int | None:
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """Resident memory of ``pid`` and its descendants (a Piper worker's model lives in its child)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            status = (proc / str(current) / "status").read_text()
            total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")) * 1024
            for task in (proc / str(current) / "task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, StopIteration):
            if current == pid:
                return None
    return total
