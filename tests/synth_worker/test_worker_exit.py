"""A drained worker exits even when a thread of its process would hold the interpreter's exit.

Python joins every thread that is not a daemon (a ThreadPoolExecutor's too) before a process ends;
one that never returns would keep a drained worker alive until someone SIGKILLs it (the stalled
reload of issue 22 was such a process: drained, and still there). The worker, once done, looks
for such threads (``held_threads``), logs them (``worker_exit_held``, with where each one is) and
ends the process itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from broker.launcher import Mosquitto
from tests.conftest import T

from .support import WorkerProcess

HOLD = Path(__file__).resolve().parent.parent / "sesame_voice" / "hold_exit"

PROBE = """
import threading
from concurrent.futures import ThreadPoolExecutor
from synth_worker.main import held_threads
idle = ThreadPoolExecutor(thread_name_prefix="idle")
idle.submit(int).result()
idle.shutdown(wait=False)
threading.Thread(target=threading.Event().wait, name="stuck").start()
print(held_threads())
import os
os._exit(0)
"""


def test_held_threads_names_a_blocked_thread_and_not_an_idle_executor() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=6 * T, check=True
    ).stdout
    assert "stuck at " in out and "threading.py" in out, out
    assert "idle" not in out, out


def test_a_worker_with_a_thread_that_never_ends_still_exits_after_its_drain(mosquitto: Mosquitto) -> None:
    pythonpath = os.pathsep.join([str(HOLD), os.environ.get("PYTHONPATH", "")])
    worker = WorkerProcess(
        mosquitto, {"SESAME_ENGINE": "espeak-ng", "SESAME_TEST_HOLD_EXIT": "thread", "PYTHONPATH": pythonpath}
    )
    try:
        worker.wait_log("worker_ready", 12 * T)
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(timeout=6 * T)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
    assert code == 0
    held = worker.wait_log("worker_exit_held", T)
    assert any(t.startswith("held-by-test at ") for t in held["threads"]), held
