"""Broker users for a local mosquitto: generated passwords, its password file, and client option files.

One broker configuration for development, tests and production (docs/security.md): anonymous
clients are refused and every client is a user of one role, checked by ``broker/mosquitto.acl``.

- Role users, one each: ``gateway``, ``llm`` (writes session text/flush/cancel), ``device`` (opens
  and drives MQTT-only sessions), ``listener`` (reads session events and audio), ``monitor``
  (read-only: worker heartbeats and statuses, claims, ``$SYS``).
- Worker users, one per worker: the user name is the worker id, and the ACL's ``%u`` patterns let
  a worker write only its own heartbeat, status and replies and read only its own jobs. A worker id
  may not be a role name (the gateway ignores such a worker: ``is_role``).

Passwords come from ``secrets`` (192 bits), are kept in memory by the process that made them, and
reach the broker only hashed (mosquitto's PBKDF2-SHA512 ``$7$`` format) in a 0600 file inside a 0700
directory owned by this process. The users who read by hand (``listener``, ``monitor``) get a
mosquitto_sub/mosquitto_pub options file there (``XDG_CONFIG_HOME=...``), so their password is
never on a command line. A new worker user is added to the file and the broker told to reload
(``launcher.Mosquitto.url_for``); rotating a password is making a new ``Credentials``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from pathlib import Path

from .errors import ConfigError
from .settings import MqttUrl
from .topics import check_id

ROLES = ("gateway", "llm", "device", "listener", "monitor")
PASSWORD_BYTES = 24
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's own count for $7$ hashes
# The roles whose users a person may use from a shell (mosquitto_sub/mosquitto_pub options files).
HAND_ROLES = ("listener", "monitor")


def is_role(name: str) -> bool:
    """A role's user name: never a worker id (the ACL's %u patterns would make it one)."""
    return name in ROLES


def hash_password(password: str, salt: bytes | None = None) -> str:
    """mosquitto's password-file hash (``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def private_dir(path: Path) -> Path:
    """``path`` as a 0700 directory owned by this process (made if missing); ConfigError otherwise."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(f"{path} must be a directory owned by uid {os.getuid()}")
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner may read (0600 from the start, not chmod'ed after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


class Credentials:
    """The users of one local broker: every role, and the workers added since."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = private_dir(run_dir)
        self.passwd_path = self.dir / "mosquitto.passwd"
        self._passwords: dict[str, str] = {}
        for role in ROLES:
            self._passwords[role] = secrets.token_urlsafe(PASSWORD_BYTES)
        self._write()

    @property
    def users(self) -> list[str]:
        return list(self._passwords)

    def add_worker(self, worker_id: str) -> bool:
        """A user for this worker; True when it is new (the broker must reload its password file)."""
        check_id(worker_id, "worker_id")
        if is_role(worker_id):
            raise ConfigError(f"worker id {worker_id!r} is a role name ({', '.join(ROLES)})")
        if worker_id in self._passwords:
            return False
        self._passwords[worker_id] = secrets.token_urlsafe(PASSWORD_BYTES)
        self._write()
        return True

    def url(self, user: str, host: str, port: int) -> MqttUrl:
        """The broker's address with ``user``'s credentials (KeyError for an unknown user)."""
        return MqttUrl(host, port, user, self._passwords[user])

    def client_options(self, user: str, host: str, port: int) -> Path:
        """A directory to use as ``XDG_CONFIG_HOME`` for mosquitto_sub/mosquitto_pub as ``user``."""
        home = private_dir(self.dir / "clients" / user)
        options = f"-h {host}\n-p {port}\n-V mqttv5\n-u {user}\n-P {self._passwords[user]}\n"
        for tool in ("mosquitto_sub", "mosquitto_pub"):
            write_private(home / tool, options)
        return home

    @staticmethod
    def from_client_options(home: Path) -> MqttUrl:
        """The URL in a ``client_options`` directory (a tool of the same OS user reading the
        credentials ``up`` made for it, without a password on any command line)."""
        words = (home / "mosquitto_sub").read_text().split()
        opts = dict(zip(words[::2], words[1::2], strict=False))
        return MqttUrl(opts["-h"], int(opts["-p"]), opts["-u"], opts["-P"])

    def _write(self) -> None:
        write_private(
            self.passwd_path, "".join(f"{u}:{hash_password(p)}\n" for u, p in self._passwords.items())
        )
