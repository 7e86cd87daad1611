"""The local stack (tests/support/localstack.py) leaves nothing running when its owner is sent
SIGTERM: its processes run in sessions of their own, as ``up``'s do, so the signal reaches none of
them, and before this a bench killed so left its broker and gateway running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import T
from tests.support.localstack import REPO

OWNER = """
import sys
from tests.support.localstack import Stack
with Stack({"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false"}, start_timeout=%r) as stack:
    assert stack.broker.proc is not None
    print(stack.gateway.pid, stack.broker.proc.pid, flush=True)
    sys.stdin.read()  # held up until the test signals
"""


def test_sigterm_to_a_stack_s_owner_stops_the_stack_s_processes() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER % (6 * T)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        pids = [int(pid) for pid in owner.stdout.readline().split()]  # "" if the stack failed to start
        assert len(pids) == 2
        owner.send_signal(signal.SIGTERM)
        owner.wait(timeout=3 * T)
        # The owner waited for each before it exited: a process left running is still in /proc.
        assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    finally:
        owner.kill()
        owner.communicate(timeout=T)
        for pid in pids:  # what a failing run left, so it does not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
