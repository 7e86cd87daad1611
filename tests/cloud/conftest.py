"""Fixtures for tests of the cloud stand-ins themselves (see fixtures.py for reuse elsewhere)."""

from .fixtures import blackhole_port, edge_server, elevenlabs_server, refused_port

__all__ = ["blackhole_port", "edge_server", "elevenlabs_server", "refused_port"]
