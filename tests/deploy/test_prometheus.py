"""The Prometheus alert rules (promtool's check and its unit tests) and the Grafana dashboard's queries.

Every metric a dashboard panel or an alert rule reads must be one the gateway exports: the names are
taken from a real ``Metrics`` registry, so a renamed metric breaks this test, not a dashboard in
production.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream_server.monitoring.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus-rules.yaml"
RULE_TESTS = DEPLOY / "prometheus-rules.test.yaml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
# Series Prometheus makes itself (scrape health), not the gateway.
PROMETHEUS_OWN = {"up"}
# Exported by the supervisor's collector (stream_server/monitoring/restarts.py, when `up` runs the
# gateway under its supervisor), not by ``Metrics``.
SUPERVISOR = REPO / "stream_server" / "monitoring" / "restarts.py"
SUPERVISOR_SERIES = {"sesame_restarts_total"}

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian's prometheus: make system-deps)"
)

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords or labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end() :].lstrip()
        if rest.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        match family.type:
            case "counter":
                names |= {f"{family.name}_total", f"{family.name}_created"}
            case "histogram":
                names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
            case _:
                names.add(family.name)
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_the_extractor_finds_metrics_and_skips_functions_and_labels() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, path) (rate(x_bucket{path="a b"}[5m]))) / on() group_left() y'
    )
    assert promql_metrics(expr) == {"x_bucket", "y"}


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    out = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=DEPLOY, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_has_a_unit_test_or_a_reason() -> None:
    tested = {
        a["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for a in t["alert_rule_test"]
    }
    rules = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    # promtool has no scrape of a down target, and the other two are the plan's ratios on
    # histograms/counters that the monitor's own tests cover.
    untested = {"SesameGatewayDown", "SesameFallbackRateHigh", "SesameTTFAHigh"}
    assert rules - tested == untested


def supervisor_series() -> set[str]:
    """The supervisor's series, once its collector is in the tree (checked in its source)."""
    if not SUPERVISOR.exists():
        return SUPERVISOR_SERIES  # issue 9 not merged yet: the name is its contract
    source = SUPERVISOR.read_text()
    return {name for name in SUPERVISOR_SERIES if name.removesuffix("_total") in source}


def test_every_metric_the_dashboard_reads_is_exported() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = set().union(*map(promql_metrics, exprs))
    assert used - exported_names() - supervisor_series() == set()


def test_every_metric_the_rules_read_is_exported() -> None:
    used = set().union(*map(promql_metrics, rule_exprs()))
    assert used - exported_names() - PROMETHEUS_OWN - supervisor_series() == set()


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]).lower()
    for needed in ("time to first audio", "fallbacks by tier", "uptime", "workers up", "restarts", "alerts"):
        assert needed in titles
