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

REPO = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx not installed (make system-deps)")


def nginx_main(prefix: Path, port: int) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.getuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    include {prefix}/upstream.conf;
    server {{
        listen 127.0.0.1:{port};
        include {REPO}/deploy/nginx/sesame-proxy.conf;
    }}
}}
"""


class Nginx:
    def __init__(self, prefix: Path, upstream: str) -> None:
        self.prefix = prefix
        self.port = free_port()
        (prefix / "nginx.conf").write_text(nginx_main(prefix, self.port))
        self.env = {
            **os.environ,
            "NGINX_UPSTREAM_CONF": str(prefix / "upstream.conf"),
            "NGINX": f"{NGINX} -p {prefix} -c {prefix / 'nginx.conf'}",
        }
        (prefix / "upstream.conf").write_text(f"upstream sesame_gateway {{ server {upstream}; }}\n")
        # nginx daemonizes: when this returns 0 its sockets are bound and it accepts.
        subprocess.run([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], check=True, timeout=T)

    def switch(self, upstream: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "deploy" / "switch-upstream.sh"), upstream],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=2 * T,
            check=False,
        )

    def stop(self) -> None:
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-s", "quit"],
            timeout=T,
            check=False,
            capture_output=True,
        )


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
    nginx = Nginx(tmp_path, f"127.0.0.1:{blue.port}")
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
