"""The reaper (``sesame_voice.reaper``): a closed pipe without ``done`` kills the children named in
the state file; ``done`` kills nothing; a state file of another ``up`` is ignored."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sesame_voice.reaper import Reaper, child_groups
from tests.conftest import T


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _state(path: Path, owner: int, pid: int) -> Path:
    child = {"name": "broker", "role": "broker", "pid": pid}
    path.write_text(json.dumps({"pid": owner, "children": [child]}))
    return path


def test_a_pipe_closed_without_done_kills_every_child_group(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    reaper = Reaper(_state(tmp_path / "state.json", os.getpid(), sleeper.pid))
    os.close(reaper._write)  # what the kernel does when up dies
    assert sleeper.wait(3 * T) == -9
    assert reaper.proc.wait(3 * T) == 0


def test_done_kills_nothing(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    reaper = Reaper(_state(tmp_path / "state.json", os.getpid(), sleeper.pid))
    reaper.done()
    assert reaper.proc.wait(3 * T) == 0
    assert sleeper.poll() is None


def test_a_state_file_of_another_up_names_no_child(tmp_path: Path) -> None:
    assert child_groups(_state(tmp_path / "a.json", 12345, 777), owner=12345) == [777]
    assert child_groups(_state(tmp_path / "b.json", 12345, 777), owner=54321) == []
    (tmp_path / "c.json").write_text("not json")
    assert child_groups(tmp_path / "c.json", owner=12345) == []
    assert child_groups(tmp_path / "missing.json", owner=12345) == []
