"""Benchmark-only variant, loaded through PYTHONPATH by bench/gateway_overhead.py ``--variants``:
sets TCP_NODELAY on every MQTT client socket paho opens in the gateway and worker processes, to
measure the proposed fix for Nagle + delayed-ACK stalls (see docs/benchmarks.md) without changing
broker/link.py. Not used by the product."""

import socket

try:
    import paho.mqtt.client as _paho

    _create = _paho.Client._create_socket_connection

    def _create_nodelay(self):  # type: ignore[no-untyped-def]
        sock = _create(self)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    _paho.Client._create_socket_connection = _create_nodelay
except ImportError:
    pass
