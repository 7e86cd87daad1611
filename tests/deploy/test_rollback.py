"""deploy/rollback.sh picks the tag to go back to (the plan's rollback steps 3 and 4).

The blue/green steps themselves (deploy/deploy.sh) need a container daemon; here DEPLOY_SH names a
stand-in that records what it was asked to deploy, so what is checked is rollback.sh's own choice.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    (d / "history").write_text(
        "2026-12-01T10:00:00Z pre-hardening\n2026-12-02T10:00:00Z v2\n2026-12-03T10:00:00Z v3\n"
    )
    (d / "previous_tag").write_text("v2\n")
    (d / "tag").write_text("v3\n")
    return d


def rollback(state: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str | None]:
    asked = state.parent / "asked"
    stand_in = state.parent / "deploy.sh"
    stand_in.write_text(f'#!/usr/bin/env bash\necho "$SKIP_BUILD $*" >"{asked}"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "DEPLOY_STATE_DIR": str(state), "DEPLOY_SH": str(stand_in)}
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / "rollback.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, asked.read_text().strip() if asked.exists() else None


def test_without_a_tag_it_deploys_the_previous_one_unbuilt(state: Path) -> None:
    done, asked = rollback(state)
    assert done.returncode == 0, done.stderr
    assert "rollback: v3 -> v2" in done.stdout
    assert asked == "1 v2"


def test_a_tag_deployed_before_is_the_full_rollback(state: Path) -> None:
    done, asked = rollback(state, "pre-hardening")
    assert done.returncode == 0, done.stderr
    assert asked == "1 pre-hardening"


def test_a_tag_never_deployed_is_refused(state: Path) -> None:
    done, asked = rollback(state, "v9")
    assert done.returncode == 1
    assert "never deployed" in done.stderr
    assert asked is None


def test_list_shows_the_history_and_nothing_recorded_is_refused(state: Path, tmp_path: Path) -> None:
    done, asked = rollback(state, "--list")
    assert done.stdout.splitlines()[-1] == "2026-12-03T10:00:00Z v3"
    assert asked is None
    empty = tmp_path / "empty"
    empty.mkdir()
    done, asked = rollback(empty)
    assert (done.returncode, asked) == (1, None)
    assert "no previous tag" in done.stderr
