"""A bench script run once in its ``--smoke`` form, from a test: the one subprocess call, and the
checks every fault harness's report must pass (bench/chaos.py, bench/cluster.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("SESAME_TEST_TIMEOUT_SCALE", "1"))


def run_smoke(script: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--smoke", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout_s * SCALE,
        check=False,
    )


def harness_report(
    script: str, banner: str, json_out: Path, *args: str, logs: Path | None = None
) -> dict[str, Any]:
    """Run a fault harness with ``--json json_out``; it exits 0, prints its banner, and its report
    says: sentences were spoken, none lost, each spoken or sent as text, every fault healed. With
    ``logs`` (a harness that takes ``--logs``), a fault that did not heal shows each process's last
    log lines."""
    done = run_smoke(
        script, "--json", str(json_out), *args, *(("--logs", str(logs)) if logs else ()), timeout_s=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert banner in done.stdout
    rep: dict[str, Any] = json.loads(json_out.read_text())
    assert rep["sentences"] > 0
    assert rep["lost"] == 0, rep
    assert rep["spoken"] + rep["texted"] == rep["sentences"]
    assert rep["all_healed"], f"{rep['faults']}\n{log_tails(logs)}"
    return rep


def log_tails(folder: Path | None, lines: int = 15) -> str:
    """The last ``lines`` lines of each log a harness kept (a failure's evidence)."""
    if folder is None or not folder.is_dir():
        return ""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted(folder.glob("*.log"))
    )
