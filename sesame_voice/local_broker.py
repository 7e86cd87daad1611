"""``up``'s own mosquitto: the production configuration and ACL, with credentials made here
(moved out of up.py unchanged)."""

from __future__ import annotations

import contextlib
import shutil
import signal
from pathlib import Path

from broker.credentials import Credentials
from broker.errors import ConfigError
from broker.launcher import free_port, local_config
from broker.settings import MqttUrl

from .child_process import ChildSpec
from .children import Supervisor


class LocalBroker:
    """``up``'s own mosquitto: the production configuration and ACL, credentials made here."""

    def __init__(self, run_dir: Path, worker_ids: list[str]) -> None:
        self.port = free_port()
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ConfigError(
                "mosquitto is not installed (Debian package 'mosquitto'; `make up` installs it)"
            )
        self.credentials = Credentials(run_dir / f"broker-{self.port}")
        for wid in worker_ids:  # the first workers' users exist before the broker starts
            self.credentials.add_worker(wid)
        conf = self.credentials.dir / "mosquitto.conf"
        conf.write_text(local_config(self.port, self.credentials.passwd_path))
        self.spec = ChildSpec("broker", "broker", (binary, "-c", str(conf)))
        self.listener_home = self.credentials.client_options("listener", "127.0.0.1", self.port)
        self.credentials.client_options("monitor", "127.0.0.1", self.port)

    def url(self, user: str) -> MqttUrl:
        return self.credentials.url(user, "127.0.0.1", self.port)

    def worker_url(self, worker_id: str, sup: Supervisor) -> MqttUrl:
        """A worker's own user; a new one (a reload's worker) makes the broker reread its users.
        Should the worker connect before that, it is refused once and retries (broker/link.py)."""
        if self.credentials.add_worker(worker_id) and (proc := sup.procs.get("broker")) is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)
        return self.url(worker_id)

    def listen_hint(self) -> str:
        return (
            f"XDG_CONFIG_HOME={self.listener_home} mosquitto_sub -v "
            "-t 'sesame/v1/sessions/+/events' -t 'sesame/v1/sessions/+/audio'"
        )
