"""What the HTTP routes reach of the gateway: ``typing.Protocol`` ports (the hub is one; only the
composition root, stream_server/main.py, knows it as ``Hub``)."""

from __future__ import annotations

from typing import Protocol

from stream_server.audio_out.encoder_pool import EncoderPool
from stream_server.config import GatewayConfig
from stream_server.core.health import Readiness
from stream_server.hub.detached import Detached
from stream_server.hub.ports import SessionHost
from stream_server.hub.send_pass import SendPass
from stream_server.hub.tier_operator import TierOperator
from stream_server.monitoring.metrics import Metrics
from stream_server.monitoring.status_view import ViewedGateway
from synth_worker.voices import VoiceMap


class SpeechHost(SessionHost, Protocol):
    """``/tts`` and ``/v1/audio/speech``: a session per request."""

    @property
    def voices(self) -> VoiceMap: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def encoder(self) -> EncoderPool: ...


class WebsocketHost(SessionHost, Protocol):
    """``/ws``: a session per socket, kept for a resume when the socket drops."""

    @property
    def detached(self) -> Detached: ...

    @property
    def send_pass(self) -> SendPass: ...


class HealthHost(ViewedGateway, Protocol):
    """``/ready``, ``/metrics``, ``/status``."""

    @property
    def metrics(self) -> Metrics: ...

    def readiness(self) -> Readiness: ...


class AdminHost(Protocol):
    """``/admin/tiers``: the operator's tier switch, behind the full token."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def tier_operator(self) -> TierOperator: ...


class GatewayHost(SpeechHost, WebsocketHost, HealthHost, AdminHost, Protocol):
    """Everything the HTTP app reaches (``create_app`` takes it)."""
