"""One supervised child process: what to start (``ChildSpec``), its death with the supervisor
(``PR_SET_PDEATHSIG``), and the signals it and its process group get."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from sesame_voice.supervisor import Role

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    role: Role
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    worker_id: str | None = None
    health_url: str | None = None
    pass_fds: tuple[int, ...] = ()  # the gateway's listening socket, shared across its reloads


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def signal_main(pid: int, sig: int) -> None:
    """SIGTERM goes to the child itself: it drains, and its own children (espeak-ng, say) keep
    working meanwhile. The group gets SIGKILL afterwards, for anything left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
