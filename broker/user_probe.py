"""Does the broker know a user yet? Asked the one way that cannot be fooled: by connecting as it.

A new worker's user is written to the password file and mosquitto told to reread its files with
SIGHUP. mosquitto 2.0 (``loop.c``) logs "Reloading config." *before* it reads them and clears its
reload flag *after*: a SIGHUP that arrives during a reload is lost, and the user written just
before it stays unknown until some later reload. Two workers added back to back lose the second
now and then (CI, stop 29: "mosquitto did not reload its users"; ``up``'s reload starts workers
``surge`` at a time). So every new user is confirmed: a CONNECT as that user, and after a refusal
another reload. mosquitto serves no client while it reloads (one thread), so an accepted probe also
means no reload is under way: the next SIGHUP cannot be lost.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .errors import BrokerError, BrokerStartError
from .mqtt_packet import connack_reason, connect_packet
from .settings import MqttUrl

DISCONNECT = b"\xe0\x00"  # MQTT v5 DISCONNECT, reason "normal", no properties


def broker_accepts(url: MqttUrl, timeout: float) -> bool:
    """True when the broker at ``url`` accepts its user and password, False when it refuses them.
    BrokerError when it does not answer within ``timeout`` s or closes before its CONNACK."""
    try:
        with socket.create_connection((url.host, url.port), timeout=timeout) as sock:
            sock.sendall(connect_packet(url.username or "", url.password or ""))
            data = b""
            while (reason := connack_reason(data)) is None:
                chunk = sock.recv(64)
                if not chunk:
                    raise BrokerError(f"{url} closed the connection before its CONNACK")
                data += chunk
            if reason == 0:
                sock.sendall(DISCONNECT)
            return reason == 0
    except OSError as exc:
        raise BrokerError(f"{url} did not answer a CONNECT: {exc}") from exc


def confirm_user(url: MqttUrl, reload: Callable[[float], None], timeout: float) -> None:
    """Return once the broker accepts ``url``'s user; after each refusal ``reload(seconds_left)``
    asks it to reread its users and returns when that may have happened. BrokerStartError when
    ``timeout`` s pass first."""
    deadline = time.monotonic() + timeout
    while not broker_accepts(url, max(deadline - time.monotonic(), 0.1)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrokerStartError(f"the broker did not take user {url.username!r} within {timeout}s")
        reload(left)
