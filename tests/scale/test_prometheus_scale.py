"""Prometheus at scale: the remote_write option of prometheus/prometheus.yml, and quick runs of the
scale benchmarks (rule cost on synthetic series, tier throughput) that print their figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import find_binary, run_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "prometheus" / "prometheus.yml"

pytestmark = pytest.mark.stack


def uncommented_remote_write() -> dict[str, Any]:
    """prometheus.yml with its commented remote_write block switched on."""
    lines = CONFIG.read_text().splitlines()
    start = lines.index("#remote_write:")
    block = []
    for line in lines[start:]:
        body = line[1:]
        if not line.startswith("#") or not (body == "remote_write:" or body.startswith("  ")):
            break
        block.append(body)
    config: dict[str, Any] = yaml.safe_load("\n".join(lines[:start] + block + lines[start + len(block) :]))
    return config


def test_remote_write_is_off_by_default() -> None:
    assert "remote_write" not in yaml.safe_load(CONFIG.read_text())


@pytest.mark.skipif(find_binary("promtool") is None, reason="promtool not on PATH")
def test_remote_write_option_is_a_valid_config(tmp_path: Path) -> None:
    config = uncommented_remote_write()
    (remote,) = config["remote_write"]
    assert remote["url"].startswith("http")
    # The relabeling drops raw latency buckets only: recorded series (with colons) stay.
    (relabel,) = remote["write_relabel_configs"]
    assert relabel["action"] == "drop" and relabel["source_labels"] == ["__name__"]
    pattern = re.compile(f"^(?:{relabel['regex']})$")
    assert pattern.match("infersight_request_duration_seconds_bucket")
    assert pattern.match("infersight_stage_duration_seconds_bucket")
    for kept in (
        "model_le:infersight_request_duration_seconds_bucket:rate5m",
        "infersight_request_duration_seconds_count",
        "infersight_requests_over_slo_total",
    ):
        assert not pattern.match(kept), kept
    config["rule_files"] = [str(ROOT / "prometheus-rules" / "*.rules.yaml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    promtool = find_binary("promtool")
    assert promtool is not None
    res = run_tool([promtool, "check", "config", str(path)], timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "benchmarks/rule_cost.py",
            ["all groups:", "ms per evaluation cycle", "10 model versions have a recorded P99"],
        ),
        ("benchmarks/tier_throughput.py", ["| one gateway |", "| agent + 2 gateways |", "tier / one gateway:"]),
    ],
)
def test_scale_benchmark_runs_quick(script: str, expected: list[str]) -> None:
    needs = "prometheus" if "rule" in script else None
    if needs and find_binary(needs) is None:
        pytest.skip(f"{needs} not on PATH")
    res = subprocess.run([sys.executable, script, "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    for line in expected:
        assert line in res.stdout, f"{script}: {line!r} missing from\n{res.stdout}"
