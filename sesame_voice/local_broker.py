"""``up``'s own mosquitto: the production configuration and ACL, with credentials made here
(moved out of up.py unchanged)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from pathlib import Path

from broker import logs
from broker.credentials import Credentials
from broker.errors import BrokerError, ConfigError
from broker.launcher import free_port, local_config
from broker.settings import MqttUrl
from broker.user_probe import confirm_user

from .child_process import ChildSpec
from .children import Supervisor

log = logs.get("sesame.supervisor")
CONFIRM_TIMEOUT_S = 30.0  # a new worker is not ready sooner than this on a busy host either
RELOAD_PAUSE_S = 0.1


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
        self._one_at_a_time = asyncio.Lock()
        self._confirming: set[asyncio.Task[None]] = set()

    def url(self, user: str) -> MqttUrl:
        return self.credentials.url(user, "127.0.0.1", self.port)

    def worker_url(self, worker_id: str, sup: Supervisor) -> MqttUrl:
        """A worker's own user; a new one (a reload's worker) makes the broker reread its users, and
        is confirmed in the background (``broker/user_probe.py``: mosquitto loses a SIGHUP that lands
        in a reload, and a reload starts workers ``surge`` at a time). Should the worker connect
        before that, it is refused and retries (broker/link.py)."""
        made = self.credentials.add_worker(worker_id)
        url = self.url(worker_id)
        if made and "broker" in sup.procs:
            confirm = self._confirm(url, sup)
            task = asyncio.get_running_loop().create_task(confirm, name=f"confirm:{worker_id}")
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
        return url

    async def _confirm(self, url: MqttUrl, sup: Supervisor) -> None:
        loop = asyncio.get_running_loop()

        def hup() -> None:
            if (proc := sup.procs.get("broker")) is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)

        def reload(left: float) -> None:  # in the probe's thread
            loop.call_soon_threadsafe(hup)
            # mosquitto takes a signal when its 100 ms poll ends or a client wakes it (the probe):
            # the pause only keeps a broker that never takes the user from a storm of reloads.
            time.sleep(min(left, RELOAD_PAUSE_S))

        async with self._one_at_a_time:  # an accepted probe means no reload is under way
            try:
                await asyncio.to_thread(confirm_user, url, reload, CONFIRM_TIMEOUT_S)
            except BrokerError as exc:
                log.error(  # noqa: TRY400 (the error says it all)
                    "broker_user_unconfirmed", user=url.username, error=str(exc)
                )

    async def confirmed(self) -> None:
        """Return once every new worker user so far is confirmed (or given up on and logged)."""
        while self._confirming:
            await asyncio.gather(*self._confirming)

    def listen_hint(self) -> str:
        return (
            f"XDG_CONFIG_HOME={self.listener_home} mosquitto_sub -v "
            "-t 'sesame/v1/sessions/+/events' -t 'sesame/v1/sessions/+/audio'"
        )
