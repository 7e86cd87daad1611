"""pytest fixtures for the cloud stand-ins, a plugin every test sees (``pytest_plugins`` in
tests/conftest.py): a test names ``edge_server`` or ``elevenlabs_server`` as an argument, nothing is
imported. Each test gets a fresh server in mode "ok"; set ``.mode`` to make it misbehave.

    elevenlabs_server  -> ElevenLabsStandIn: .base_url, .api_key, .mode, .requests, .request_seen,
                          .disconnected
    edge_server        -> EdgeStandIn: .endpoint, .mode, .turns, .handshakes, .request_seen,
                          .disconnected
    refused_port       -> a loopback port where nothing listens (connections are refused)
    blackhole_port     -> a loopback port where connects hang (for connect timeouts)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .edge_server import EdgeStandIn
from .elevenlabs_server import ElevenLabsStandIn
from .loopthread import Blackhole, closed_port


@pytest.fixture
def elevenlabs_server() -> Iterator[ElevenLabsStandIn]:
    with ElevenLabsStandIn() as server:
        yield server


@pytest.fixture
def edge_server() -> Iterator[EdgeStandIn]:
    with EdgeStandIn() as server:
        yield server


@pytest.fixture
def refused_port() -> int:
    return closed_port()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    hole = Blackhole()
    try:
        yield hole.port
    finally:
        hole.close()
