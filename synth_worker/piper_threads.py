"""How many onnxruntime threads a Piper child uses: one session fast, many sessions fair (#20, #24).

A Piper child holds its voice twice when the two counts differ: once with ``alone`` intra-op
threads, once with ``shared``. Before each clause it asks the machine's busy lock
(``synth_worker.piper_child.BusyLock``, a file every Piper child of this user on this machine
shares) whether another child is speaking right now: alone, the clause runs on ``alone`` threads
(every core: a single listener's first audio as fast as the machine allows); beside another
speaker, on ``shared`` threads (the cores divided among the workers: no oversubscription, each
core busy with one clause, the most clauses per CPU second). The lock is the one signal: it tells
at the moment of the clause, from the children themselves. (A load check, ``/proc/loadavg``, was
dropped: the gateway, the broker or a benchmark's client waking for a moment kept a lone child on
one thread, 124 ms to first audio instead of 96, #20.) Idle threads sleep instead of spinning
(spinning on 2 threads measured slower on a loaded machine, 284.5 against 68.7 ms to first
samples, at twice the CPU: ``bench/piper_clauses.py --threads 2 [--spin]``), so the session
that is not used costs memory (about 125 MB for the packaged voice), no CPU.

SESAME_PIPER_THREADS=N fixes both to N (one session, no lock); ``auto`` (the default) is
``piper_threads(cores, workers)``, where ``workers`` is SESAME_WORKERS (what ``sesame-voice up``
starts and passes to its workers; unset or ``auto``: ``one_core_workers(cores)``, up's default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_LOCAL_WORKERS = 16  # beyond, one gateway's event loop is the limit (sesame_voice/capacity.py)


@dataclass(frozen=True, slots=True)
class PiperThreads:
    alone: int  # intra-op threads while no other Piper child on this machine is speaking
    shared: int  # ... while another one is (0 in both: onnxruntime's own default)

    @classmethod
    def fixed(cls, threads: int) -> PiperThreads:
        return cls(threads, threads)

    @property
    def adaptive(self) -> bool:
        return self.alone != self.shared


def one_core_workers(cores: int) -> int:
    """Workers ``up`` starts for a one-job-at-a-time engine (Piper, espeak-ng): one per core, at
    most ``MAX_LOCAL_WORKERS``."""
    return max(1, min(MAX_LOCAL_WORKERS, cores))


def piper_threads(cores: int, workers: int) -> PiperThreads:
    """``alone``: every core; ``shared``: the cores divided among the machine's Piper workers (at
    least 1). 2 cores, 2 workers: 2 and 1; 8 cores, 8 workers: 8 and 1; 32 cores, 16 workers: 32
    and 2."""
    cores = max(1, cores)
    return PiperThreads(alone=cores, shared=max(1, cores // max(1, workers)))


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
