"""``sesame-voice reload``: ask a running ``sesame-voice up`` to replace its processes one at a time.

It sends SIGHUP to the ``up`` named by ``{run_dir}/up-{port}.pid`` (the same settings ``up`` reads:
SESAME_RUN_DIR, SESAME_PORT, or ``--port``). ``up`` logs ``reload_started`` and ``reload_done``.
Exit status: 0 when the signal was delivered, 1 when no ``up`` runs for that port.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .up import UpConfig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sesame-voice reload", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="the gateway port of that up (SESAME_PORT)")
    args = parser.parse_args(argv)
    config = UpConfig.from_env(dict(os.environ), args.port, None)
    path = config.pid_path()
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(
            f"sesame-voice reload: no running `sesame-voice up` for port {config.port} ({path}: {exc})",
            file=sys.stderr,
        )
        return 1
    print(f"sesame-voice reload: asked up (pid {pid}) to reload")
    return 0
