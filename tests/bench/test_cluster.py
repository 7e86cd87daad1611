"""The scale-out harness's smoke run (bench/cluster.py --smoke): two gateways behind nginx, two
broker nodes, two workers, and one of each SIGKILLed under open-loop turns.

It asserts what must hold whatever the machine's speed: no sentence lost, none heard twice, the
link of every process on the dead node moved to the other, and every fault healed. Times are
measured, not asserted: docs/scaling.md has the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("SESAME_TEST_TIMEOUT_SCALE", "1"))


def test_cluster_smoke_loses_nothing_doubles_nothing_and_heals(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cluster.py"), "--smoke", "--json", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=400 * SCALE,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cluster: two gateways behind nginx" in done.stdout
    rep = json.loads(out.read_text())
    assert rep["sentences"] > 0
    assert rep["lost"] == 0 and rep["doubled"] == 0, rep
    assert rep["spoken"] + rep["texted"] == rep["sentences"]
    assert [f["kind"] for f in rep["faults"]] == ["broker", "gateway", "worker"]
    [broker] = [f for f in rep["faults"] if f["kind"] == "broker"]
    assert broker["moved_s"] is not None, rep["faults"]
    assert rep["all_healed"], rep["faults"]
