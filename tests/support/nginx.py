"""Debian's nginx on loopback in front of gateways, with the production proxy settings
(deploy/nginx/sesame-proxy.conf, included as is). Used by tests/deploy/test_nginx.py (blue/green:
one upstream server, switched by deploy/switch-upstream.sh) and bench/cluster.py (an upstream of
several gateways in deploy/nginx/upstream-two.conf's shape)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from broker.launcher import free_port

REPO = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def upstream_of(servers: list[str]) -> str:
    """deploy/nginx/upstream-two.conf's shape: new sessions to the least busy, a dead one skipped."""
    lines = "\n".join(f"    server {s} max_fails=1 fail_timeout=5s;" for s in servers)
    return f"upstream sesame_gateway {{\n    least_conn;\n{lines}\n    keepalive 32;\n}}\n"


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
    """``upstream``: one server (``HOST:PORT``), or a whole upstream.conf text (``upstream_of``)."""

    def __init__(self, prefix: Path, upstream: str, timeout: float = 30.0) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.port = free_port()
        (prefix / "nginx.conf").write_text(nginx_main(prefix, self.port))
        self.env = {
            **os.environ,
            "NGINX_UPSTREAM_CONF": str(prefix / "upstream.conf"),
            "NGINX": f"{NGINX} -p {prefix} -c {prefix / 'nginx.conf'}",
        }
        if not upstream.startswith("upstream "):
            upstream = f"upstream sesame_gateway {{ server {upstream}; }}\n"
        (prefix / "upstream.conf").write_text(upstream)
        # nginx daemonizes: when this returns 0 its sockets are bound and it accepts.
        subprocess.run(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], check=True, timeout=timeout
        )

    def switch(self, upstream: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "deploy" / "switch-upstream.sh"), upstream],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=2 * self.timeout,
            check=False,
        )

    def stop(self) -> None:
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-s", "quit"],
            timeout=self.timeout,
            check=False,
            capture_output=True,
        )
