"""The chaos harness's smoke run (bench/chaos.py --smoke): every fault once against a real ``up``.

It asserts what must hold whatever the machine's speed: no sentence lost, every fault healed
(Bark spoke again and every worker was ready again). Times to heal are measured, not asserted:
docs/reliability.md has the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("SESAME_TEST_TIMEOUT_SCALE", "1"))


def test_chaos_smoke_loses_nothing_and_heals_every_fault(tmp_path: Path, dev_model_dir: Path) -> None:
    out = tmp_path / "chaos.json"
    svg = tmp_path / "chaos.svg"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "chaos.py"),
            "--smoke",
            "--engine",
            "bark",
            "--model",
            str(dev_model_dir),
            "--json",
            str(out),
            "--svg",
            str(svg),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=400 * SCALE,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "chaos: faults under open-loop websocket turns" in done.stdout
    rep = json.loads(out.read_text())
    assert rep["sentences"] > 0
    assert rep["lost"] == 0, rep
    assert rep["spoken"] + rep["texted"] == rep["sentences"]
    assert [f["kind"] for f in rep["faults"]] == ["sigkill", "sigstop", "broker", "reload", "model"]
    assert rep["all_healed"], rep["faults"]
    assert all(f["heal_s"] is not None for f in rep["faults"])
    assert rep["engines"].get("bark", 0) > 0
    assert {"up", "gateway"} <= {key.split(":")[0] for key in rep["rss"]}  # "name:pid"
    assert [r["done_s"] > 0 and r["ok"] for r in rep["reloads"]] == [True]
    assert svg.read_text().startswith("<svg")
