"""How much synthesis ``sesame-voice up`` runs on this machine (issue 24).

How many workers (SESAME_WORKERS or ``--workers`` where given; else ``default_workers``): a Piper
worker speaks one sentence at a time, so ``up`` starts one per core, at most 16 (beyond, the one
gateway's event loop is the limit): 2 on 2 cores, 8 on 8, 16 on 32, and passes the count to the
workers as SESAME_WORKERS. Each worker's onnxruntime threads (``synth_worker.piper_threads``): every
core while no other Piper worker is speaking (one session fast), the cores divided among the
workers while others are (many sessions fair): 2 and 1 on 2 cores, 8 and 1 on 8, 32 and 2 on 32.
The gateway, mosquitto and the in-process tiers share those cores; the tiers are capped to a quarter of them
(SESAME_PIPER_TIER_CONCURRENCY, SESAME_ESPEAK_CONCURRENCY), and jobs start by playback deadline, so
a core is never idle while a listener waits. A Bark worker batches sessions itself and uses every
core (torch threads): one.
"""

from __future__ import annotations

from broker.settings import Env
from synth_worker.piper_threads import one_core_workers


def default_workers(engine: str, cores: int) -> int:
    """Workers ``up`` starts when SESAME_WORKERS is not set: one per core for the one-core engines
    (Piper, espeak-ng), at most 16; one Bark worker (it batches and uses every core itself)."""
    if engine == "bark":
        return 1
    return one_core_workers(cores)


def workers_setting(e: Env) -> int | None:
    raw = e.raw("SESAME_WORKERS")
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    return e.int("SESAME_WORKERS", 1, lo=0, hi=64)
