"""bench/cluster.py's deployment: the two-node broker cluster, two gateways, two workers and nginx
in front, started and stopped; where each process was connected, from its log."""

from __future__ import annotations

import argparse
from pathlib import Path

from _stack import Proc

from broker.launcher import free_port
from tests.support.cluster import Cluster
from tests.support.nginx import Nginx, upstream_of


class Deployment:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.cluster = Cluster(heartbeat_ms=500, start_timeout=60).start()
        self.procs: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}
        self.nginx: Nginx | None = None
        base = {
            "SESAME_TIERS": args.tiers,
            "SESAME_CACHE_ENABLED": "false",
            "SESAME_RETRY_DELAY": "0",
            "SESAME_STATE_DIR": str(tmp),
        }
        try:
            for gw, node in (("g1", "a"), ("g2", "b")):
                self.ports[gw] = free_port()
                env = {**base, "SESAME_GATEWAY_ID": gw, "SESAME_PORT": str(self.ports[gw])}
                env["SESAME_MQTT_URL"] = self.cluster.urls(node)
                self.procs[gw] = Proc(["gateway"], env, gw)
            for gw in ("g1", "g2"):
                self.procs[gw].wait_event("gateway_listening", 120)
            for worker, node in (("w-a", "a"), ("w-b", "b")):
                env = {"SESAME_WORKER_ID": worker, "SESAME_ENGINE": args.engine}
                env |= {"SESAME_MQTT_URL": self.cluster.urls(node), "SESAME_HEARTBEAT_INTERVAL_MS": "200"}
                self.procs[worker] = Proc(["worker"], env, worker)
            for gw in ("g1", "g2"):
                for worker in ("w-a", "w-b"):
                    self.procs[gw].wait_for(
                        lambda e, w=worker: (
                            e.get("event") == "worker_change"  # type: ignore[misc]
                            and e.get("worker_id") == w
                            and e.get("up") is True
                        ),
                        300,
                        f"{worker} ready on {gw}",
                    )
            gateways = [f"127.0.0.1:{self.ports[gw]}" for gw in ("g1", "g2")]
            self.nginx = Nginx(tmp, upstream_of(gateways))
        except BaseException:
            self.close()
            raise

    @property
    def ws_url(self) -> str:
        assert self.nginx is not None
        return f"ws://127.0.0.1:{self.nginx.port}/ws"

    @property
    def http_url(self) -> str:
        assert self.nginx is not None
        return f"http://127.0.0.1:{self.nginx.port}"

    def gateway_of(self, session_id: str) -> str | None:
        """The gateway that opened ``session_id`` (from its log)."""
        for gw in ("g1", "g2"):
            if any(
                e.get("event") == "session_open" and e.get("session_id") == session_id
                for e in self.procs[gw].events()
            ):
                return gw
        return None

    def node_at(self, name: str, mono: float) -> str | None:
        """The node ``name`` was last connected to before ``mono`` (monotonic), from its log."""
        urls = {str(n.url): key for key, n in self.cluster.nodes.items()}
        last = None
        for at, e in self.procs[name].timed_events():
            if at < mono and e.get("event") == "mqtt_connected" and e.get("client_id") != f"{name}-monitor":
                last = urls.get(str(e.get("broker")))
        return last

    def connected_to(self, name: str, node: str, since_mono: float) -> float | None:
        """When ``name`` logged its connection to ``node`` after ``since_mono`` (monotonic)."""
        url = str(self.cluster.nodes[node].url)
        for at, e in self.procs[name].timed_events():
            if (
                at >= since_mono
                and e.get("event") == "mqtt_connected"
                and e.get("broker") == url
                and e.get("client_id") != f"{name}-monitor"
            ):
                return at
        return None

    def keep_logs(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, proc in self.procs.items():
            (folder / f"{name}.log").write_text("\n".join(proc.lines) + "\n")
        for name, node in self.cluster.nodes.items():
            (folder / f"node-{name}.log").write_text("\n".join(node.lines) + "\n")

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for proc in self.procs.values():
            proc.stop(30)
        self.cluster.close()
