"""Debian's nginx on loopback in front of two real gateways: the blue/green switch under load.

The proxy settings are the production ones (deploy/nginx/sesame-proxy.conf, included as is);
the switch is deploy/switch-upstream.sh itself. The production TLS config (deploy/nginx.conf) is
checked with ``nginx -t`` against a self-signed certificate.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.launcher import Mosquitto, free_port
from clients import load_requests, loadtest
from tests.conftest import T
from tests.support.localstack import Stack
from tests.support.nginx import NGINX, Nginx, nginx_main

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx not installed (make system-deps)")


@pytest.fixture
def two_gateways(mosquitto: Mosquitto) -> Iterator[tuple[Stack, Stack]]:
    env = {"SESAME_TIERS": "espeak-ng", "SESAME_CACHE_ENABLED": "false"}
    blue = Stack(env, broker=mosquitto, start_timeout=6 * T)
    try:
        green = Stack(env, broker=mosquitto, start_timeout=6 * T)
        try:
            yield blue, green
        finally:
            green.close()
    finally:
        blue.close()


async def test_flipping_the_upstream_under_load_fails_no_turn(
    two_gateways: tuple[Stack, Stack], tmp_path: Path
) -> None:
    blue, green = two_gateways
    nginx = Nginx(tmp_path, f"127.0.0.1:{blue.port}", timeout=T)
    try:
        cfg = load_requests.LoadConfig(
            url=f"http://127.0.0.1:{nginx.port}",
            mode="ws",
            rate=4.0,
            duration_s=10.0,
            progress=False,
            timeout_s=12 * T,
        )
        load = asyncio.create_task(loadtest.run(cfg))
        await asyncio.to_thread(blue.gateway.wait_events, "session_open", 3, 6 * T)
        green_mark = len(green.gateway.lines)
        switched = await asyncio.to_thread(nginx.switch, f"127.0.0.1:{green.port}")
        assert switched.returncode == 0, switched.stderr
        assert f"127.0.0.1:{green.port}" in (tmp_path / "upstream.conf").read_text()
        await asyncio.to_thread(
            green.gateway.wait_for,
            lambda e: e.get("event") == "session_open",
            6 * T,
            "green session",
            green_mark,
        )
        result = await load
    finally:
        nginx.stop()
    errors = [o.error for o in result.outcomes if o.error is not None]
    assert errors == []
    assert len(result.outcomes) == result.scheduled
    assert all(o.sentences > 0 for o in result.outcomes)


def test_a_config_nginx_rejects_is_not_switched_to(tmp_path: Path) -> None:
    (tmp_path / "upstream.conf").write_text("upstream sesame_gateway { server 127.0.0.1:1; }\n")
    (tmp_path / "nginx.conf").write_text(nginx_main(tmp_path, free_port()))
    env = {
        **os.environ,
        "NGINX_UPSTREAM_CONF": str(tmp_path / "upstream.conf"),
        "NGINX": f"{NGINX} -p {tmp_path} -c {tmp_path / 'nginx.conf'}",
    }
    done = subprocess.run(
        [str(REPO / "deploy" / "switch-upstream.sh"), "127.0.0.1:notaport"],
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * T,
        check=False,
    )
    assert done.returncode == 1
    assert "upstream unchanged" in done.stderr
    assert "127.0.0.1:1;" in (tmp_path / "upstream.conf").read_text()


def test_the_production_tls_config_passes_nginx_t(tmp_path: Path) -> None:
    sesame = tmp_path / "sesame"
    (sesame / "tls").mkdir(parents=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(sesame / "tls" / "privkey.pem"),
            "-out",
            str(sesame / "tls" / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=6 * T,
    )
    shutil.copy(REPO / "deploy" / "nginx" / "sesame-proxy.conf", sesame)
    shutil.copy(REPO / "deploy" / "nginx" / "upstream.conf", sesame)
    site = (REPO / "deploy" / "nginx.conf").read_text().replace("/etc/nginx/sesame/", f"{sesame}/")
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"  {k}_temp_path {tmp_path}/t-{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n{temp}\n  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=2 * T,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr
