"""docs/operations.md: its alert rules are valid Prometheus rule YAML whose metrics are all in
a real scrape, and its metric tables name every metric the engine exposes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ops_helpers import scrape_text
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import names

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")


def _rules() -> list[dict[str, object]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    groups = [yaml.safe_load(block) for block in blocks if "alert:" in block]
    assert len(groups) == 1, "docs/operations.md should hold one block of alerting rules"
    return [rule for group in groups[0]["groups"] for rule in group["rules"]]


def _exposed_names(text: str) -> set[str]:
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        if family.type == "counter":
            exposed.add(family.name + "_total")
        if family.type == "summary":
            exposed |= {family.name + "_count", family.name + "_sum"}
    return exposed


def test_alert_rules_parse_and_name_only_metrics_a_scrape_has(served: int) -> None:
    rules = _rules()
    wanted = {
        "CampaignNothingSent",
        "CampaignUnknownGrowing",
        "CampaignRunAutoPaused",
        "CampaignDispatcherDead",
        "CampaignCircuitOpenLong",
    }
    assert wanted <= {rule["alert"] for rule in rules}
    exposed = _exposed_names(scrape_text(served))
    for rule in rules:
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["labels"]["severity"] in {"page", "ticket"}  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
        used = set(re.findall(r"\bcampaign_[a-z_]+", rule["expr"]))
        assert used, rule["alert"]
        missing = used - exposed
        assert not missing, f"{rule['alert']} names metrics no scrape has: {sorted(missing)}"


def test_the_metric_tables_name_every_metric() -> None:
    documented = set(re.findall(r"`(campaign_[a-z_]+)`", DOC))
    for metric in (*names.COUNTERS.values(), *names.GAUGES):
        shown = metric.name + "_total" if metric.kind == "counter" else metric.name
        assert shown in documented, f"{shown} is not in docs/operations.md"
