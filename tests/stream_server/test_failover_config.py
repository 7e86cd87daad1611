"""The failover defaults are written once (``FailoverConfig``) and the environment reader uses them."""

from __future__ import annotations

import pytest

from broker.errors import ConfigError
from broker.messages import ACK_HOLD_S
from stream_server.config import GatewayConfig
from stream_server.core.actions import WORKERS
from stream_server.core.failover import DEFAULTS, LOCAL_TIERS, FailoverConfig


def test_the_default_tiers_are_every_tier_piper_included() -> None:
    assert FailoverConfig().tiers == (WORKERS, "elevenlabs", "edge-tts", "piper", "espeak-ng")
    assert DEFAULTS.tiers == (WORKERS, *LOCAL_TIERS)


def test_an_empty_environment_gives_the_dataclass_defaults() -> None:
    env = {"ELEVENLABS_API_KEY": "k"}  # without a key elevenlabs is not a tier at all
    assert GatewayConfig.from_env(env).failover == FailoverConfig()
    assert GatewayConfig.from_env({}).failover.tiers == (WORKERS, "edge-tts", "piper", "espeak-ng")


def test_every_gateway_default_is_the_dataclass_field_s() -> None:
    """``from_env`` reads its defaults from the fields (written once): an environment that sets
    nothing gives the dataclass's own defaults, but for what is generated or needs a key."""
    built = GatewayConfig.from_env({"ELEVENLABS_API_KEY": "k"})
    fields = GatewayConfig(mqtt_url=built.mqtt_url, gateway_id=built.gateway_id, elevenlabs_api_key="k")
    assert built == fields
    assert str(built.mqtt_url) == "mqtt://127.0.0.1:1883"


def test_an_ack_timeout_a_held_ack_would_miss_is_refused() -> None:
    """A worker holds a started job's ack up to ``ACK_HOLD_S`` for its first audio: an ack timeout
    that leaves it no room would fail over every job whose first audio takes longer."""
    with pytest.raises(ConfigError, match="SESAME_ACK_TIMEOUT"):
        GatewayConfig.from_env({"SESAME_ACK_TIMEOUT": str(ACK_HOLD_S * 1000)})
    assert (
        GatewayConfig.from_env({"SESAME_ACK_TIMEOUT": str(2 * ACK_HOLD_S * 1000)}).failover.ack_timeout_s
        == 2 * ACK_HOLD_S
    )
