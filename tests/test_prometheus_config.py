"""prometheus/prometheus.yml: promtool check config, the scrape/alerting layout, and a real
Prometheus that loads every rule group from it with exemplar storage on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import find_binary, http_get, prometheus, run_tool, wait_until

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((ROOT / "prometheus-rules").glob("*.rules.yaml"))
PROMTOOL = find_binary("promtool")
PROMETHEUS = find_binary("prometheus")

pytestmark = pytest.mark.stack


def _config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return data


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH")
def test_promtool_check_config() -> None:
    assert PROMTOOL is not None
    result = run_tool([PROMTOOL, "check", "config", str(CONFIG)], timeout=30)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # The relative rule_files glob resolves next to this file, to every rule file.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in out, out


def test_scrape_and_alerting_targets() -> None:
    config = _config()
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    assert targets["model-server"] == ["model-server:8000"]
    assert targets["otel-collector"] == ["otel-collector:8889"]
    assert targets["otel-collector-internal"] == ["otel-collector:8888"]
    assert targets["alertmanager"] == ["alertmanager:9093"]
    assert "prometheus" in targets
    model_server = next(j for j in config["scrape_configs"] if j["job_name"] == "model-server")
    assert model_server.get("metrics_path", "/metrics") == "/metrics"
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    assert "exemplar-storage" in CONFIG.read_text()  # the flag is documented


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not on PATH")
@pytest.mark.timeout(40)
def test_prometheus_loads_all_rule_groups(tmp_path: Path) -> None:
    config = _config()
    # Same rules, absolute paths, evaluated every second; no scrapes, no Alertmanager.
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ROOT / "prometheus-rules" / "*.rules.yaml")]
    config["scrape_configs"] = []
    config.pop("alerting")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    expected = {group["name"] for rule_file in RULE_FILES for group in yaml.safe_load(rule_file.read_text())["groups"]}
    with prometheus(path, tmp_path) as prom:

        def groups() -> dict[str, list[dict[str, Any]]]:
            status, body = http_get(f"{prom.url}/api/v1/rules")
            assert status == 200
            data = json.loads(body)["data"]["groups"]
            return {g["name"]: g["rules"] for g in data}

        loaded = groups()
        assert set(loaded) == expected
        # Each rule is evaluated once without error (health "ok"; "unknown" before).
        wait_until(
            lambda: all(r["health"] == "ok" for rules in groups().values() for r in rules),
            20,
            what="all rules evaluated with health ok",
        )
        status, body = http_get(f"{prom.url}/api/v1/status/flags")
        assert status == 200
        assert json.loads(body)["data"]["enable-feature"] == "exemplar-storage"
