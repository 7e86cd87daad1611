"""The local mosquitto launcher: starts on a free port, stops, restarts; clients reconnect; it runs
the production configuration and ACL with generated, private credentials."""

from __future__ import annotations

import asyncio
import signal
import socket
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from broker.credentials import ROLES
from broker.errors import BrokerError
from broker.launcher import ACL, PRODUCTION_CONFIG, RELOAD_WAIT_S, RELOADED, Mosquitto
from broker.link import MqttLink
from broker.user_probe import broker_accepts
from tests.conftest import T


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


async def test_start_stop_restart_and_reconnect() -> None:
    broker = Mosquitto().start()
    try:
        assert broker.proc is not None and broker.proc.poll() is None
        assert accepts(broker.port)
        connects: list[int] = []
        second = asyncio.Event()

        async def on_connect(link: MqttLink) -> None:
            connects.append(link.connects)
            if len(connects) >= 2:
                second.set()

        async with MqttLink(
            broker.url_for("monitor"), "launcher-test", on_connect=on_connect, backoff_max=0.2
        ) as link:
            await link.wait_connected(T)
            broker.stop()
            assert not accepts(broker.port)
            broker.start()  # same port
            assert accepts(broker.port)
            async with asyncio.timeout(2 * T):
                await second.wait()  # the link reconnected on its own
            assert connects == [1, 2]
    finally:
        broker.close()
    assert broker.proc is not None and broker.proc.poll() is not None
    assert not accepts(broker.port)


async def test_link_says_when_no_broker_answers() -> None:
    broker = Mosquitto()  # never started: nothing listens on its port
    async with MqttLink(broker.url, "nobody-home", backoff_max=0.1) as link:
        with pytest.raises(BrokerError):
            await link.wait_connected(0.5)
    broker.close()


def test_context_manager_and_restart() -> None:
    with Mosquitto() as broker:
        first = broker.proc
        broker.restart()
        assert broker.proc is not first and broker.proc is not None and broker.proc.poll() is None
        assert accepts(broker.port)


def test_the_local_broker_runs_the_production_config_with_private_generated_credentials() -> None:
    with Mosquitto() as broker:
        conf = broker.config_path.read_text()
        production = PRODUCTION_CONFIG.read_text().splitlines()
        # Every production line is there, but the listener (loopback) and the two file paths.
        kept = [
            line
            for line in production
            if line.split(" ", 1)[0] not in ("listener", "password_file", "acl_file")
        ]
        assert all(line in conf.splitlines() for line in kept)
        assert "allow_anonymous false" in conf and f"acl_file {ACL}" in conf
        assert Path("deploy/mosquitto.acl").resolve() == ACL.resolve()  # one ACL file
        assert Path("deploy/mosquitto.conf").resolve() == PRODUCTION_CONFIG.resolve()
        creds = broker.credentials
        assert stat.S_IMODE(creds.dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(creds.passwd_path.stat().st_mode) == 0o600
        broker.url_for("w-launcher")  # a worker user, added to the running broker
        text = creds.passwd_path.read_text()
        assert {line.split(":", 1)[0] for line in text.splitlines()} == {*ROLES, "w-launcher"}
        assert broker.url_for("gateway").password not in text  # only hashes on disk
        assert all(line.split(":", 1)[1].startswith("$7$") for line in text.splitlines())
        home = creds.client_options("listener", "127.0.0.1", broker.port)
        assert stat.S_IMODE((home / "mosquitto_sub").stat().st_mode) == 0o600
        assert str(broker.url_for("listener")) == f"mqtt://listener@127.0.0.1:{broker.port}"  # no password


def test_users_added_back_to_back_are_each_known_when_url_for_returns() -> None:
    """mosquitto loses a SIGHUP that arrives while it reloads (it clears its flag after): with a
    reload's log line as the only sign, the second of two users added back to back was sometimes
    never read (CI, stop 29). Each url_for now returns only once the broker accepts its user."""
    with Mosquitto() as broker:
        for i in range(40):
            url = broker.url_for(f"w-burst-{i}")
            assert broker_accepts(url, T), f"user {i} unknown to the broker after url_for"
        assert sum(RELOADED in line for line in broker.log_lines) <= 2 * 40  # no storm of reloads


def test_the_user_probe_tells_accepted_from_refused() -> None:
    with Mosquitto() as broker:
        good = broker.url_for("w-probe")
        assert broker_accepts(good, T)
        assert not broker_accepts(replace(good, password="not-the-password"), T)
        assert not broker_accepts(replace(good, username="w-nobody"), T)
    with pytest.raises(BrokerError, match="did not answer"):
        broker_accepts(good, T)  # stopped: nothing listens


def test_a_lost_sighup_is_sent_again_until_the_broker_knows_the_user() -> None:
    """The SIGHUP mosquitto loses (one that lands in a reload) is dropped here on its way: the
    launcher used to wait for a reload line that never came and fail; now the probe finds the user
    unknown and the broker is told again."""
    with Mosquitto() as broker:
        assert broker.proc is not None
        send = broker.proc.send_signal
        dropped: list[int] = []

        def lose_the_first_sighup(sig: int) -> None:
            if sig == signal.SIGHUP and not dropped:
                dropped.append(sig)
                return
            send(sig)

        broker.proc.send_signal = lose_the_first_sighup  # type: ignore[method-assign]
        url = broker.url_for("w-lost-hup", timeout=3 * RELOAD_WAIT_S)
        assert dropped == [signal.SIGHUP]
        assert broker_accepts(url, T)
