"""A real two-node MQTT 5 broker cluster on loopback: Redis and two aedes nodes sharing it.

``tests/support/aedes/broker.mjs`` is one node (aedes 2.0.0-beta.1 + mqemitter-redis +
aedes-persistence-redis, pinned by that folder's package-lock.json; ``make node-deps`` installs
them, ``make test`` depends on it). Messages published on one node reach subscribers of the other,
retained messages and wills are kept in Redis, and a node killed with SIGKILL is a node death: its
clients' connections drop and the other node publishes their wills after three missed broker
heartbeats. aedes refuses ``$share`` subscriptions (SUBACK 0x9E).

Readiness is read from each process's own output line, never guessed with sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from broker.launcher import free_port, stop_process
from broker.settings import MqttNodes, MqttUrl

AEDES = Path(__file__).resolve().parent / "aedes"


class ClusterError(RuntimeError):
    """A cluster process did not start (its output is attached)."""


class _Child:
    """A child process whose output is kept; ``start`` blocks until a line contains ``ready``."""

    def __init__(self, name: str, args: list[str], ready: str, cwd: Path | None = None) -> None:
        self.name, self.args, self.ready, self.cwd = name, args, ready, cwd
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self, timeout: float) -> None:
        seen = threading.Event()
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.proc, seen), daemon=True, name=self.name).start()
        if not seen.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise ClusterError(f"{self.name} did not start: {' | '.join(self.lines[-8:])}")

    def _pump(self, proc: subprocess.Popen[str], seen: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip())
            del self.lines[:-300]
            if self.ready in line:
                seen.set()
        seen.set()  # exited: start() sees poll() and reports the output

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a node death, no goodbye to its clients."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5.0)


class BrokerNode(_Child):
    def __init__(self, node_id: str, redis_port: int, heartbeat_ms: int) -> None:
        self.node_id = node_id
        self.port = free_port()
        node = shutil.which("node") or "/usr/bin/node"
        args = [node, "broker.mjs", "--port", str(self.port), "--id", node_id]
        args += ["--redis-port", str(redis_port), "--heartbeat-ms", str(heartbeat_ms)]
        super().__init__(f"aedes-{node_id}", args, '"broker_listening"', cwd=AEDES)

    @property
    def url(self) -> MqttUrl:
        return MqttUrl("127.0.0.1", self.port)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]


class Cluster:
    """Redis + nodes ``a`` and ``b``. ``urls(first)`` is a SESAME_MQTT_URL listing every node,
    ``first`` first. ``kill(node)`` SIGKILLs a node; ``restart(node)`` brings it back on its port."""

    def __init__(self, heartbeat_ms: int = 500, start_timeout: float = 30.0) -> None:
        missing = [p for p in ("redis-server", "node") if shutil.which(p) is None]
        if missing or not (AEDES / "node_modules" / "aedes").is_dir():
            raise ClusterError(
                f"the test cluster needs redis-server, node and {AEDES}/node_modules "
                f"(`make node-deps`); missing: {missing or ['node_modules']}"
            )
        self.start_timeout = start_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="sesame-cluster-")
        self.redis_port = free_port()
        redis = shutil.which("redis-server") or "redis-server"
        self.redis = _Child(
            "redis",
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""],
            "Ready to accept connections",
            cwd=Path(self._tmp.name),
        )
        self.nodes = {n: BrokerNode(n, self.redis_port, heartbeat_ms) for n in ("a", "b")}

    def start(self) -> Cluster:
        try:
            self.redis.start(self.start_timeout)
            for node in self.nodes.values():
                node.start(self.start_timeout)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def url(self) -> MqttNodes:
        """Every node, ``a`` first (what a ``Stack`` given this cluster as its broker uses)."""
        return MqttNodes.parse(self.urls("a"))

    def url_for(self, user: str) -> MqttNodes:
        """aedes has no users: every client of this stand-in cluster is anonymous (the broker's ACL
        is mosquitto's: docs/security.md), so every role gets the nodes' address."""
        return self.url

    def urls(self, first: str = "a") -> str:
        order = [first, *(n for n in self.nodes if n != first)]
        return str(MqttNodes(tuple(self.nodes[n].url for n in order)))

    def kill(self, node: str) -> None:
        self.nodes[node].kill()

    def restart(self, node: str) -> None:
        self.nodes[node].stop()
        self.nodes[node].start(self.start_timeout)

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.redis.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
