"""The stuck-job watchdog: on the worker's deadline task, at ``WorkerCore.next_deadline()`` (when
the earliest running job would be stuck), it asks the core which jobs are and reports them; the
worker then gives up and exits to be replaced (``process.py``)."""

from __future__ import annotations

from broker import logs
from synth_worker.core import WorkerCore

log = logs.get("sesame.worker")


class Watchdog:
    def __init__(self, core: WorkerCore) -> None:
        self.core = core
        self.stuck = False

    def next_deadline(self) -> float | None:
        return None if self.stuck else self.core.next_deadline()

    def handle_timer(self, now: float) -> bool:
        """True (once) when a job is stuck."""
        stuck = [] if self.stuck else self.core.stuck(now)
        for job, ran_s in stuck:
            log.error(
                "job_stuck",
                job_id=job.job_id,
                session_id=job.session_id,
                running_s=round(ran_s, 3),
                limit_s=round(self.core.stuck_limit_s(job), 3),
                rtf=round(self.core.rtf, 4),
            )
        self.stuck = self.stuck or bool(stuck)
        return bool(stuck)
