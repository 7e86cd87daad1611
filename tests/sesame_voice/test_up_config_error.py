"""``up`` and configuration errors: checked before any child starts, said in one line, exit 78
(EX_CONFIG); a child that exits 78 is not restarted in a loop but stops the supervisor."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from broker.errors import EXIT_CONFIG
from sesame_voice import up
from sesame_voice.child_process import ChildSpec
from sesame_voice.children import Supervisor
from sesame_voice.supervisor import Policy, SupervisorCore
from tests.conftest import T

OPEN = ("SESAME_AUTH_TOKEN", "SESAME_CLIENT_TOKENS", "SESAME_CLIENT_TOKENS_FILE", "SESAME_ALLOW_OPEN")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_up_beyond_loopback_without_a_token_says_so_once_and_starts_nothing(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in OPEN:
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "run"
    monkeypatch.setenv("SESAME_RUN_DIR", str(run_dir))
    monkeypatch.setenv("SESAME_ENGINE", "espeak-ng")
    args = ["--host", "0.0.0.0"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("SESAME_HOST", "0.0.0.0")
    assert up.main([*args, "--port", "18999"]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sesame-voice up: ") and "SESAME_AUTH_TOKEN" in err[0]
    assert not run_dir.exists()  # nothing was started: not even the run directory


async def test_a_child_exiting_78_is_not_restarted_and_stops_the_supervisor() -> None:
    core = SupervisorCore(Policy(initial_s=0.05, max_s=0.1))
    bad = ChildSpec("gateway", "gateway", (sys.executable, "-c", f"raise SystemExit({EXIT_CONFIG})"))
    with capture_logs() as logs:
        async with Supervisor(core, mqtt_url=None, state_path=None, stop_timeout_s=T) as sup:
            sup.add(bad)
            async with asyncio.timeout(T):
                await sup.run(asyncio.Event())  # returns by itself: nothing to wait for any more
            assert core.halted == ("gateway", EXIT_CONFIG)
            assert not core.restarts and "gateway" not in sup.procs
    events = [e["event"] for e in logs]
    assert "child_config_error" in events and "child_restarted" not in events
