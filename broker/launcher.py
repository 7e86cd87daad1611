"""Start and stop a local mosquitto on a free loopback port, configured as production is.

Used by ``sesame-voice up`` (when no SESAME_MQTT_URL is given) and by the tests: nothing depends on
a broker already running. Its configuration is ``broker/mosquitto.conf`` (the production file) with
a loopback listener, and its ACL is ``broker/mosquitto.acl`` (the production ACL): anonymous clients
are refused, and every client connects with credentials this launcher generated
(``credentials.py``): ``url_for("gateway")``, ``url_for("listener")``, ``url_for(worker_id)``.
Readiness is read from mosquitto's own log line, not guessed with sleeps (the log goes to stderr,
which C leaves unbuffered, so the line arrives when it is written).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from .credentials import Credentials, is_role
from .errors import BrokerStartError
from .settings import MqttUrl
from .user_probe import confirm_user

PRODUCTION_CONFIG = Path(__file__).with_name("mosquitto.conf")  # deploy/mosquitto.conf links here
ACL = Path(__file__).with_name("mosquitto.acl")  # deploy/mosquitto.acl links here
RELOADED = "Reloading config."  # what mosquitto logs when SIGHUP makes it read its files again
# mosquitto takes a signal when its 100 ms poll ends; a SIGHUP without its line after this long
# was lost or the broker starved, and the probe that follows decides (user_probe.py).
RELOAD_WAIT_S = 1.0

# Added to the production file for a local broker: its log on stderr, and never a user switch (as
# root, mosquitto would become "mosquitto" and could not read the 0600 password file).
LOCAL_LINES = """\
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages false
log_timestamp false
user {user}
"""


def local_config(port: int, passwd_path: Path, acl_path: Path = ACL) -> str:
    """The production configuration with a loopback listener on ``port`` and local file paths."""
    local = {
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {passwd_path}",
        "acl_file": f"acl_file {acl_path}",
    }
    lines = [local.get(line.split(" ", 1)[0], line) for line in PRODUCTION_CONFIG.read_text().splitlines()]
    return "\n".join(lines) + "\n" + LOCAL_LINES.format(user=pwd.getpwuid(os.getuid()).pw_name)


def stop_process(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Mosquitto:
    """A mosquitto child process. ``start()`` blocks until it logs that it is listening."""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="sesame-mosquitto-") if workdir is None else None
        self.workdir: Path = Path(self._tmp.name) if self._tmp is not None else Path(workdir or ".")
        self.config_path = self.workdir / "mosquitto.conf"
        self.credentials = Credentials(self.workdir / "auth")
        self.proc: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        self._reloads = 0
        self._reloaded = threading.Condition()

    @property
    def url(self) -> MqttUrl:
        """The broker's address, without credentials: it refuses a client that connects so."""
        return MqttUrl("127.0.0.1", self.port)

    def url_for(self, user: str, timeout: float = 10.0) -> MqttUrl:
        """The address with ``user``'s credentials: a role (``credentials.ROLES``), or a worker id,
        whose user is made on first use; the running broker rereads its users, and the user is
        confirmed by connecting as it before this returns (``user_probe.py``: a SIGHUP can be lost)."""
        made = not is_role(user) and self.credentials.add_worker(user)
        url = self.credentials.url(user, "127.0.0.1", self.port)
        if made:
            proc = self.proc
            if proc is not None and proc.poll() is None:  # else the next start reads the file anyway
                with self._reloaded:  # one confirmation at a time: no SIGHUP lands in a reload
                    confirm_user(url, lambda left: self._reload(proc, left), timeout)
        return url

    def _reload(self, proc: subprocess.Popen[str], timeout: float) -> None:
        """SIGHUP, then wait (at most ``timeout`` s) for mosquitto's log line; it logs the line before
        it rereads its files but serves no client until it has, so a CONNECT sent now finds them."""
        seen = self._reloads
        proc.send_signal(signal.SIGHUP)
        self._reloaded.wait_for(lambda: self._reloads > seen, min(timeout, RELOAD_WAIT_S))

    def start(self, timeout: float = 10.0) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerStartError(
                "mosquitto is not installed (Debian package 'mosquitto'; `make up` installs it)"
            )
        self.config_path.write_text(local_config(self.port, self.credentials.passwd_path))
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it in order
        )
        ready = threading.Event()
        threading.Thread(
            target=self._pump, args=(self.proc, ready), daemon=True, name="mosquitto-log"
        ).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise BrokerStartError(
                f"mosquitto did not start on port {self.port}: {' | '.join(self.log_lines[-5:])}"
            )
        return self

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log_lines.append(line.rstrip())
            del self.log_lines[:-200]
            if " running" in line:  # printed once every listener is open
                ready.set()
            elif RELOADED in line:
                with self._reloaded:
                    self._reloads += 1
                    self._reloaded.notify_all()
        ready.set()  # exited: start() sees poll() and reports the log

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
