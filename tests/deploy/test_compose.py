"""compose.yaml and the Dockerfile, checked without a container daemon (none can run here).

What a daemon would find first, found here: the YAML parses; every service has an image, a
restart policy and a health check; the commands they run are real subcommands of the image's
``sesame-voice`` with flags its parser accepts; every file they mount exists; required variables
are the ones the docs name; the blue/green gateways differ only in their port; the Dockerfile
copies every package the console command imports, and installs what the health checks call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sesame_voice.cli import SUBCOMMANDS
from synth_worker.main import _parser as worker_parser

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def test_every_service_restarts_and_has_a_health_check() -> None:
    services = compose()["services"]
    assert set(services) == {
        "mosquitto",
        "worker-a",
        "worker-b",
        "gateway-blue",
        "gateway-green",
        "datadog-agent",
    }
    for name, svc in services.items():
        assert svc.get("restart") == "always", name
        assert svc.get("healthcheck", {}).get("test"), name
        assert "image" in svc, name


def test_commands_are_real_subcommands_with_accepted_flags() -> None:
    services = compose()["services"]
    for name in ("worker-a", "worker-b", "gateway-blue", "gateway-green"):
        command = services[name]["command"]
        assert command[0] == "sesame-voice" and command[1] in SUBCOMMANDS, name
    check = services["worker-a"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "sesame-voice", "worker"]
    args = worker_parser().parse_args(check[3:])
    assert args.check_health is True
    env = services["worker-a"]["environment"]
    assert env["SESAME_HEALTH_FILE"].startswith("/")


def test_each_worker_is_its_own_broker_user_and_no_password_is_on_a_command_line() -> None:
    """docs/security.md: the ACL's %u patterns need one user per worker, named by its id."""
    services = compose()["services"]
    workers = [name for name in services if name.startswith("worker-")]
    for name in workers:
        url = services[name]["environment"]["SESAME_MQTT_URL"]
        assert url.startswith(f"mqtt://{name}:"), name  # user = service = worker id
        assert "SESAME_WORKER_ID" not in services[name]["environment"]  # it defaults to the user
    for name, svc in services.items():
        assert "-P" not in svc["healthcheck"]["test"], name
    acl = (REPO / "deploy" / "mosquitto.acl").read_text()
    assert "pattern write sesame/v1/workers/%u/heartbeat" in acl


def test_blue_and_green_differ_only_in_their_loopback_port() -> None:
    services = compose()["services"]
    blue, green = services["gateway-blue"], services["gateway-green"]
    assert blue["ports"] == ["127.0.0.1:8001:8000"]
    assert green["ports"] == ["127.0.0.1:8002:8000"]
    assert {k: v for k, v in blue.items() if k != "ports"} == {k: v for k, v in green.items() if k != "ports"}
    upstream = (REPO / "deploy" / "nginx" / "upstream.conf").read_text()
    assert "127.0.0.1:8001" in upstream


def test_mounted_files_exist() -> None:
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and not source.endswith("models"):
                path = REPO / source
                example = path.with_name(path.name + ".example")
                assert path.exists() or example.exists(), f"{name}: {source}"


def test_dockerfile_copies_every_package_and_installs_what_checks_call() -> None:
    text = (REPO / "Dockerfile").read_text()
    for package in ("broker", "synth_worker", "stream_server", "clients", "sesame_voice"):
        assert re.search(rf"^COPY {package} {package}$", text, re.M), package
        assert (REPO / package / "__init__.py").exists()
    assert "espeak-ng" in text and "curl" in text  # the offline tier; the gateway health check
    assert "torch==2.13.0" in text
    cmd = re.search(r'^CMD \["sesame-voice", "(\w[\w-]*)"', text, re.M)
    assert cmd is not None and cmd.group(1) in SUBCOMMANDS
