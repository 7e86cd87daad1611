"""An engine's child process (espeak-ng, the Piper child) runs below the processes that forward
its audio.

While a sentence is made, its synthesis keeps a CPU busy, and every hop that carries the first
chunk to the listener (the worker reading the child's pipe, mosquitto, the gateway, the client)
has to wake up and be given a CPU: on a small machine it often waits for the synthesis to be
preempted. Linux schedules each session's processes as one group ("autogroup", when
``kernel.sched_autogroup_enabled``; systemd gives each service a session) and weighs groups by
their autogroup nice. So the child runs in a session of its own (``start_new_session``) and both
its own nice and its group's are raised: a hop that wakes preempts it at once. Making audio is
throughput, carrying it is latency; the hops' CPU is small, so the child keeps nearly all of a
CPU it shares with them (docs/benchmarks.md, issue 20's thirteenth round: first audio through the
gateway ~0.3 ms sooner at p50 and p90 on 2 cores, the gateway's addition 0.75-0.80 -> 0.64 ms).

So the child runs under ``niced`` and, once spawned, ``lower_group``. A process may always lower
its children's priority; a kernel without autogroups lacks the file and only the process nice is
set. Where the processes are in cgroups of their own (systemd's cpu controller, a container), the
cgroup's weight orders them and the nice orders the child below its worker only.
"""

from __future__ import annotations

import functools
import os
import shutil

from broker import logs

log = logs.get("sesame.child_priority")

DEFAULT_NICE = 19


def niced(argv: list[str], nice: int) -> list[str]:
    """``argv`` to run at ``nice`` from its first instruction: coreutils' ``nice`` sets it before it
    execs the program, so every thread the program starts has it (set from the parent after the
    spawn, a thread espeak-ng had already started kept the worker's). 0, or a worker already at or
    past it: ``argv`` as it is."""
    step = nice - os.getpriority(os.PRIO_PROCESS, 0)
    tool = shutil.which("nice") if step > 0 else None
    if step > 0 and tool is None:
        _refused("no nice command on PATH (coreutils)")
    return [tool, "-n", str(step), *argv] if tool else argv


def lower_group(pid: int, nice: int) -> None:
    """Give the autogroup of child ``pid`` (a session leader: ``start_new_session=True``) ``nice``;
    0 leaves it as the kernel made it. A child already gone is left to its engine."""
    if nice == 0:
        return
    try:
        if os.getsid(pid) != pid:
            # Its autogroup is its parent's: raising that nice would lower the worker's hops too.
            raise ValueError(f"process {pid} is not a session leader: start it with start_new_session")
        with open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as group:
            group.write(str(nice))
    except (ProcessLookupError, FileNotFoundError):
        return  # the child is gone, or this kernel has no autogroups (its own nice is set)
    except OSError as exc:  # not ours to change, or the kernel's default group (EINVAL)
        _refused(exc.strerror or str(exc))


@functools.cache
def _refused(error: str) -> None:
    log.warning("child_priority_refused", error=error)  # once per process and kind of refusal
