"""``sesame-voice reload``: ask a running ``sesame-voice up`` to replace its processes (each ready
before the one it replaces drains; ``sesame_voice.stack``), and follow it to the end.

It sends SIGHUP to the ``up`` named by ``{run_dir}/up-{port}.pid`` (the same settings ``up`` reads:
SESAME_RUN_DIR, SESAME_PORT, or ``--port``), then follows the reload's report
(``{run_dir}/reload-{port}.json``, see ``sesame_voice.reload_report``) and prints each step as it
happens: each worker's successor ready and the old one drained and gone (or SIGKILLed at its
bound), the gateway's beside them, then the result and how long it took. ``--no-wait`` only
sends the signal.

Exit status: 0 the reload completed (or, with ``--no-wait``, the signal was delivered); 1 no
``up`` runs for that port, or the reload failed (a new process was not ready in time: the old one
keeps serving); 3 the reload did not finish within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from .reload_report import Report
from .up import UpConfig

POLL_S = 0.2  # how often the report file is read (a CLI following a file; nothing else waits on it)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sesame-voice reload", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="the gateway port of that up (SESAME_PORT)")
    parser.add_argument("--no-wait", action="store_true", help="send the signal and return")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the end")
    args = parser.parse_args(argv)
    config = UpConfig.from_env(dict(os.environ), args.port, None)
    path = config.pid_path()
    report_path = config.reload_report_path()
    last = Report.read(report_path)
    before = 0 if last is None else last.number
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(
            f"sesame-voice reload: no running `sesame-voice up` for port {config.port} ({path}: {exc})",
            file=sys.stderr,
        )
        return 1
    print(f"sesame-voice reload: asked up (pid {pid}) to reload", flush=True)
    if args.no_wait:
        return 0
    return follow(report_path, before, pid, args.timeout)


def follow(report_path: os.PathLike[str], before: int, pid: int, timeout_s: float) -> int:
    """Print the steps of the reload numbered after ``before`` until it is done."""
    path = Path(report_path)
    deadline = time.monotonic() + timeout_s
    printed = 0
    while time.monotonic() < deadline:
        report = Report.read(path)
        if report is not None and report.number > before:
            for at, text in report.steps[printed:]:
                print(f"  {at:7.2f} s  {text}", flush=True)
            printed = len(report.steps)
            if report.done:
                return 0 if report.ok else 1
        try:
            os.kill(pid, 0)
        except OSError:
            print("sesame-voice reload: up exited before the reload finished", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    print(f"sesame-voice reload: not finished within {timeout_s} s (it goes on)", file=sys.stderr)
    return 3
