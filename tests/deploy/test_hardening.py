"""The deploy files fail closed: a token is required where the gateway is reachable, the systemd
unit binds loopback behind nginx with the usual hardening, and the image does not run as root."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from broker.errors import EXIT_CONFIG

REPO = Path(__file__).resolve().parents[2]


def test_compose_requires_the_token() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    env = compose["services"]["gateway-blue"]["environment"]
    token = next(e for e in env if e.startswith("SESAME_AUTH_TOKEN="))
    assert re.fullmatch(r"SESAME_AUTH_TOKEN=\$\{SESAME_AUTH_TOKEN:\?.*\}", token)
    assert not any(e.startswith("SESAME_ALLOW_OPEN") for e in env)


def test_the_systemd_unit_binds_loopback_with_hardening() -> None:
    unit = (REPO / "deploy" / "sesame-gateway.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert "--host 127.0.0.1" in settings["ExecStart"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings.get(key) == value, key
    assert settings["User"] != "root"


def test_the_image_runs_as_a_user_of_its_own() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    cmd = max(i for i, line in enumerate(lines) if line.startswith("CMD"))
    assert max(i for i, line in enumerate(lines) if line.startswith("USER ")) < cmd


def test_the_units_do_not_restart_a_configuration_error() -> None:
    """Exit 78 (EX_CONFIG, broker.errors.EXIT_CONFIG) is not restarted in a loop by systemd either."""
    for unit in ("sesame-gateway.service", "sesame-worker@.service"):
        lines = (REPO / "deploy" / unit).read_text().splitlines()
        assert f"RestartPreventExitStatus={EXIT_CONFIG}" in lines, unit
