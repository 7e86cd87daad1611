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

How many workers a reload replaces at once (SESAME_RELOAD_SURGE, ``reload_surge``): each successor
runs beside the worker it replaces until it is ready, so a reload holds that many extra models for
a while. ``auto``: one for Bark (its checkpoint is gigabytes, and on a GPU its memory is not what
``up`` can see), every worker at once for the small engines (a Piper worker with its child: ~375 MB) as far
as half the memory available holds them (each counted as the largest running worker with its
children). A worker's step is mostly its successor's start (imports, the model, a warm-up
sentence): side by side, a reload lasts about one step instead of one per worker.
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


def surge_setting(e: Env) -> int | None:
    """SESAME_RELOAD_SURGE: None for ``auto`` (the default), else workers replaced at once."""
    raw = e.raw("SESAME_RELOAD_SURGE")
    if raw is None or raw.strip().lower() == "auto":
        return None
    return e.int("SESAME_RELOAD_SURGE", 1, lo=1, hi=64)


def reload_surge(
    setting: int | None, engine: str, workers: int, available_bytes: int | None, worker_bytes: int | None
) -> int:
    """Workers a reload replaces at once (at least 1, at most ``workers``): ``setting`` where given;
    else 1 for Bark, and for the others as many as half of ``available_bytes`` holds at
    ``worker_bytes`` each (1 when either is unknown)."""
    if setting is not None:
        return max(1, min(workers, setting))
    if engine == "bark" or not available_bytes or not worker_bytes:
        return 1
    return max(1, min(workers, available_bytes // 2 // worker_bytes))
