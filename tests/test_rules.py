"""Prometheus rules: promtool validity and unit tests, alert metadata, runbook anchors,
metric names against the conventions module, and the generated SLO rules being fresh."""

from __future__ import annotations

import re
import sys
import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools")]  # stack and gen_rules, from any cwd

import gen_rules  # noqa: E402
from infersight.conventions import ALL_METRICS  # noqa: E402
from stack import find_binary, run_tool  # noqa: E402

RULES_DIR = ROOT / "prometheus-rules"
TESTS_DIR = ROOT / "tests" / "rules"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/infersight/infersight/blob/main/docs/runbook.md#"

RULE_FILES = sorted(RULES_DIR.glob("*.rules.yaml"))
STEMS = [p.name.removesuffix(".rules.yaml") for p in RULE_FILES]
COMPONENTS = ("Inference", "Drift", "GPU", "Telemetry")
SEVERITIES = {"info", "warning", "critical"}

PROMTOOL = find_binary("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _rules() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, rule) for path in RULE_FILES for group in _load(path)["groups"] for rule in group["rules"]]


ALERTS = [(f, r) for f, r in _rules() if "alert" in r]
RECORDS = [(f, r) for f, r in _rules() if "record" in r]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-',
    repeats suffixed -1, -2, ... (code blocks skipped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", match.group(1)).lower()
        slug = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchors() -> None:
    md = "# A b\n## InferenceP99AboveSLO\n```\n# not a heading\n```\n## A b\n### GPU: x.y (z)\n"
    assert github_anchors(md) == {"a-b", "inferencep99aboveslo", "a-b-1", "gpu-xy-z"}


@needs_promtool
@pytest.mark.stack
@pytest.mark.parametrize("stem", STEMS)
def test_promtool_check_rules(stem: str) -> None:
    assert PROMTOOL is not None
    result = run_tool([PROMTOOL, "check", "rules", str(RULES_DIR / f"{stem}.rules.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.stack
@pytest.mark.parametrize("stem", STEMS)
def test_promtool_unit_tests(stem: str) -> None:
    assert PROMTOOL is not None
    test_file = TESTS_DIR / f"{stem}_test.yaml"
    assert test_file.exists(), f"every rule file needs its test file: {test_file}"
    result = run_tool([PROMTOOL, "test", "rules", test_file.name], cwd=TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_test_file_per_rule_file() -> None:
    tests = sorted(p.name.removesuffix("_test.yaml") for p in TESTS_DIR.glob("*_test.yaml"))
    assert tests == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_every_alert_is_tested_firing_and_silent(stem: str) -> None:
    rule_file = RULES_DIR / f"{stem}.rules.yaml"
    alerts = {r["alert"] for g in _load(rule_file)["groups"] for r in g["rules"] if "alert" in r}
    cases = [
        case for test in _load(TESTS_DIR / f"{stem}_test.yaml")["tests"] for case in test.get("alert_rule_test", [])
    ]
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in mine), f"{alert}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert}: no case where it is silent"
    # Every rule file in a test must be loaded by it, or promtool tests nothing.
    loaded = {Path(p).name for p in _load(TESTS_DIR / f"{stem}_test.yaml")["rule_files"]}
    assert rule_file.name in loaded


@pytest.mark.parametrize(("file", "rule"), ALERTS, ids=[r["alert"] for _, r in ALERTS])
def test_alert_metadata(file: str, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), f"{name}: CamelCase"
    assert name.startswith(COMPONENTS), f"{name}: component prefix, one of {COMPONENTS}"
    assert "for" in rule, f"{name}: explicit for:"
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    ann = rule.get("annotations", {})
    assert ann.get("summary") and "{{" not in ann["summary"], f"{name}: short static summary"
    assert len(ann["summary"]) <= 80
    assert re.search(r"\$labels\.|\$value", ann.get("description", "")), f"{name}: templated"
    assert ann.get("runbook_url", "").startswith(RUNBOOK_URL)


def test_runbook_urls_resolve() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    missing = {
        r["annotations"]["runbook_url"]
        for _, r in ALERTS
        if r["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL) not in anchors
    }
    assert not missing, f"runbook sections missing for {sorted(missing)}"
    # And one section per stem, so the rule files' "Runbook: docs/runbook.md#<stem>" hold.
    assert {s.lower() for s in STEMS} <= anchors


@pytest.mark.parametrize(("file", "rule"), RECORDS, ids=[r["record"] for _, r in RECORDS])
def test_recording_rule_names(file: str, rule: dict[str, Any]) -> None:
    # level:metric:operations, e.g. model_stage:infersight_stage_duration_seconds:p99_5m
    assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def _family(sample_name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total)$", "", sample_name)


def test_metric_names_come_from_conventions() -> None:
    known = {m.name for m in ALL_METRICS}
    used: dict[str, str] = {}
    for file, rule in _rules():
        # Raw series in expressions, and the metric part of level:metric:operation names.
        names = re.findall(r"(?<![\w:])(infersight_\w+)", rule["expr"])
        names += re.findall(r":(infersight_\w+):", rule["expr"] + " " + rule.get("record", ""))
        for name in names:
            used[name] = file
    assert used, "the rules reference no infersight metric at all?"
    unknown = {n: f for n, f in used.items() if _family(n) not in known}
    assert not unknown, f"not in sdk/infersight/conventions.py: {unknown}"


def test_generated_slo_rules_are_fresh() -> None:
    committed = (RULES_DIR / "slo.rules.yaml").read_text()
    assert gen_rules.render() == committed, "run: python tools/gen_rules.py"
    assert committed.startswith("# Generated by tools/gen_rules.py")


def test_generator_thresholds_have_no_float_noise() -> None:
    spec = gen_rules.SLOSpec(
        alert="X",
        objective=Decimal("0.999"),
        alerts=(gen_rules.BurnAlert("critical", "2m", (gen_rules.BurnWindow(Decimal("14.4"), "1h", "5m"),), "s"),),
    )
    text = gen_rules.render(spec)
    # 14.4 * 0.001 in binary floats is 0.014400000000000001.
    assert "> 0.0144\n" in text
    assert not re.search(r"\d\.\d{8,}", text)
    assert "ratio_rate1h" in text and "ratio_rate5m" in text and "ratio_rate6h" not in text
    assert text.count("  - alert: X") == 1


def test_throttle_reasons_match_the_sampler() -> None:
    """GPUClockThrottled's reason regex names only reasons the SDK's sampler exports."""
    from infersight.gpu.throttle import REASONS

    (expr,) = [r["expr"] for _, r in ALERTS if r["alert"] == "GPUClockThrottled"]
    (regex,) = re.findall(r'reason=~"([^"]+)"', expr)
    known = {name for name, _ in REASONS}
    matched = {name for name in known if re.fullmatch(regex, name)}
    assert matched == {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }


def test_generator_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gen_rules.main(["--check"]) == 0
    stale = tmp_path / "slo.rules.yaml"
    stale.write_text(gen_rules.render().replace("0.144", "0.15"))
    monkeypatch.setattr(gen_rules, "OUTPUT", stale)
    assert gen_rules.main(["--check"]) == 1


def test_one_run_leaves_the_kubernetes_manifest_in_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PrometheusRule manifest carries each generated file as this run renders it, not as the
    file on disk was before the run (which took a second run to settle)."""
    changed = gen_rules.render_attribution().replace("for: 10m", "for: 11m")
    monkeypatch.setattr(gen_rules, "render_attribution", lambda: changed)
    files = gen_rules.outputs()
    manifest = yaml.safe_load_all(files[gen_rules.PROMETHEUS_RULES])
    attribution = next(d for d in manifest if d["metadata"]["name"] == "infersight-attribution")
    alerts = [r for g in attribution["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and {r["for"] for r in alerts} == {"11m"}
