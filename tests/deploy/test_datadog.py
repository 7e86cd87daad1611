"""Datadog: deploy/datadog/conf.yaml run through the Agent's own OpenMetrics check code
(datadog-checks-base's ``OpenMetricsBaseCheckV2``, what the Agent's ``openmetrics`` integration runs
for an instance with ``openmetrics_endpoint``) against a real gateway's ``/metrics``.

The check's stub aggregator records what the Agent would send to Datadog: the names, values and
tags are asserted, and every metric family the gateway exports must arrive under ``sesame.``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from datadog_checks.base import OpenMetricsBaseCheckV2
from datadog_checks.base.stubs import aggregator
from prometheus_client.parser import text_string_to_metric_families

from stream_server.monitoring.metrics import Metrics
from tests.conftest import Service, T

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "datadog" / "conf.yaml"
OK, CRITICAL = 0, 2  # Datadog service check statuses


def conf() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONF.read_text())
    return data


@pytest.fixture(scope="module")
def gateway(espeak_gateway: Service) -> Service:
    """The shared espeak-ng gateway (tests/conftest.py) after one spoken sentence (counters, TTFA)."""
    reply = httpx.post(f"{espeak_gateway.http_url}/tts", json={"text": "Hello there."}, timeout=12 * T)
    assert reply.status_code == 200
    return espeak_gateway


def run_check(endpoint: str) -> str:
    """One run of the check on conf.yaml's first instance pointed at ``endpoint``; its error, or ''."""
    instance = {**conf()["instances"][0], "openmetrics_endpoint": endpoint}
    aggregator.reset()
    check = OpenMetricsBaseCheckV2("openmetrics", conf()["init_config"], [instance])
    error: str = check.run()
    return error


def sent() -> dict[str, list[Any]]:
    """metric name -> the samples the Agent would send."""
    return {name: list(samples) for name, samples in aggregator._metrics.items() if samples}


def test_the_agent_check_collects_the_gateways_metrics(gateway: Service) -> None:
    assert run_check(f"{gateway.http_url}/metrics") == ""
    health = aggregator.service_checks("sesame.openmetrics.health")
    assert [c.status for c in health] == [OK]
    metrics = sent()
    spoken = {tuple(sorted(s.tags)): s.value for s in metrics["sesame.sentences.count"]}
    assert any("engine:espeak-ng" in tags and value >= 1 for tags, value in spoken.items()), spoken
    assert all("gateway:blue" in s.tags for samples in metrics.values() for s in samples)
    assert "sesame.active_sessions" in metrics and "sesame.workers_ready" in metrics
    assert not [name for name in metrics if name.endswith("_created")]
    # TTFA as a distribution (percentiles across gateways), from the histogram's buckets
    assert "sesame.time_to_first_audio_seconds" in aggregator._histogram_buckets


def test_every_metric_the_gateway_exports_reaches_datadog(gateway: Service) -> None:
    assert run_check(f"{gateway.http_url}/metrics") == ""
    arrived = set(sent()) | set(aggregator._histogram_buckets)
    families = {f.name for f in Metrics().registry.collect()}
    expected = {"sesame." + name.removeprefix("sesame_") for name in families}
    missing = {name for name in expected if not any(a == name or a.startswith(name + ".") for a in arrived)}
    # families with labels but no sample yet (no fallback, no alert, no probe on this gateway)
    # are not in the scrape at all; the rest must have arrived
    scraped = httpx.get(f"{gateway.http_url}/metrics", timeout=5 * T).text
    with_samples = {
        "sesame." + family.name.removeprefix("sesame_")
        for family in text_string_to_metric_families(scraped)
        if family.samples and family.name in families
    }
    assert missing & with_samples == set()
    assert len(with_samples) >= 10


def test_a_gateway_that_does_not_answer_is_critical() -> None:
    error = run_check("http://127.0.0.1:9/metrics")  # the discard port: nothing listens
    assert error
    assert json.loads(error)[0]["message"]
    assert [c.status for c in aggregator.service_checks("sesame.openmetrics.health")] == [CRITICAL]


def test_the_instances_point_at_the_compose_gateways() -> None:
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    instances = conf()["instances"]
    assert [i["openmetrics_endpoint"] for i in instances] == [
        "http://gateway-blue:8000/metrics",
        "http://gateway-green:8000/metrics",
    ]
    for instance, colour in zip(instances, ("blue", "green"), strict=True):
        assert f"gateway-{colour}" in services
        assert instance["namespace"] == "sesame" and instance["raw_metric_prefix"] == "sesame_"
        assert f"gateway:{colour}" in instance["tags"]
        assert not any(t.split(":")[0] in {"service", "env", "version", "host"} for t in instance["tags"])
    agent = services["datadog-agent"]
    assert "DD_API_KEY=${DATADOG_API_KEY:?}" in agent["environment"]
    assert any(
        v.startswith("./deploy/datadog/conf.yaml:/etc/datadog-agent/conf.d/openmetrics.d/")
        for v in agent["volumes"]
    )
