"""The reaper: a small process that stops ``up``'s children when ``up`` dies without stopping them.

Every child of ``up`` gets ``PR_SET_PDEATHSIG`` = SIGKILL (``sesame_voice.children``), but the
kernel clears that setting when a process changes its credentials: mosquitto started by root drops
to the ``mosquitto`` user at once, and so outlived a ``kill -9`` of ``up``, holding its port. So
``up`` also starts this process first, in a session of its own (a terminal's Ctrl-C does not reach
it), with the read end of a pipe as its stdin; ``up`` holds the only write end.

- ``up`` stops cleanly: it writes ``done`` and closes the pipe; the reaper exits and kills nothing.
- ``up`` dies in any other way (``kill -9``, a crash): the kernel closes the pipe, the reaper reads
  end-of-file, and SIGKILLs the process group of every child named in ``up``'s supervisor state
  file (each child leads a group of its own; a file written by another ``up`` is ignored), then
  exits.

    python -m sesame_voice.reaper STATE_PATH   (stdin: the pipe from up)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

DONE = b"done\n"


def child_groups(state_path: Path, owner: int) -> list[int]:
    """The process groups of the children the supervisor's state file names as running, when the
    file is ``owner``'s (not a stale one left by an earlier ``up`` on the same port)."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(state, dict) or state.get("pid") != owner:
        return []
    children = state.get("children")
    groups = []
    for child in children if isinstance(children, list) else []:
        pid = child.get("pid") if isinstance(child, dict) else None
        if isinstance(pid, int) and pid > 1:
            groups.append(pid)
    return groups


def reap(state_path: Path, owner: int) -> list[int]:
    """SIGKILL every child group of ``owner`` named in ``state_path``; the groups signalled."""
    killed = []
    for pgid in child_groups(state_path, owner):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
    return killed


def watch(stdin: int, state_path: Path, owner: int) -> list[int]:
    """Read the pipe until it closes; unless ``up`` (``owner``) said ``done``, reap its children."""
    told = b""
    while chunk := os.read(stdin, 64):
        told += chunk
    return [] if told.endswith(DONE) else reap(state_path, owner)


class Reaper:
    """``up``'s side: start the reaper process; ``done()`` on a clean stop."""

    def __init__(self, state_path: Path) -> None:
        read, self._write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sesame_voice.reaper", str(state_path)],
                stdin=read,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(read)
        os.set_inheritable(self._write, False)  # no child of up may keep the pipe open

    def done(self) -> None:
        """up stopped every child itself: let the reaper go without killing anything."""
        if self._write < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write, DONE)
        os.close(self._write)
        self._write = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sesame_voice.reaper STATE_PATH  (stdin: a pipe)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only end-of-file on the pipe ends it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(sys.stdin.fileno(), Path(args[0]), os.getppid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
