"""Prometheus on loopback, on a fast copy of the shipped config and rule files.

The copies keep the shipped jobs, rules and expressions; only targets, intervals and ``for:``
windows change (the shipped files keep production values).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .paths import ROOT
from .processes import LOOPBACK, Service, run_binary

__all__ = ["duration_s", "prometheus", "prometheus_config", "rules_copy"]


def duration_s(text: str) -> float:
    """A Prometheus duration (``90s``, ``10m``, ``1.5h``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(f"not a duration: {text!r}")


def rules_copy(dest: Path, alert_for: str, overrides: Mapping[str, str] | None = None) -> Path:
    """The shipped rule files with every ``for:`` longer than ``alert_for`` cut to it (the alerts
    would otherwise need 10 min to 6 h of a condition) and ``overrides`` (alert name -> ``for:``)
    applied; expressions are untouched. Groups evaluate at the global interval."""
    dest.mkdir(parents=True, exist_ok=True)
    limit = duration_s(alert_for)
    overrides = overrides or {}
    for path in sorted((ROOT / "prometheus-rules").glob("*.rules.yaml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups") or []:
            group.pop("interval", None)
            for rule in group.get("rules") or []:
                if rule.get("alert") in overrides:
                    rule["for"] = overrides[rule["alert"]]
                elif "for" in rule and duration_s(str(rule["for"])) > limit:
                    rule["for"] = alert_for
        (dest / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def prometheus_config(path: Path, rules_dir: Path, targets: Mapping[str, list[str]], alertmanager: str) -> Path:
    """prometheus/prometheus.yml with 1 s scrape/evaluation, the rules of ``rules_dir``, alerts to
    ``alertmanager`` (host:port) and each shipped job's targets replaced by ``targets[job]``
    (jobs not in ``targets`` are dropped)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_dir / "*.rules.yaml")]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    for job in jobs:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    missing = set(targets) - {job["job_name"] for job in jobs}
    if missing:
        raise ValueError(f"jobs {sorted(missing)} are not in prometheus/prometheus.yml")
    config["scrape_configs"] = jobs
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus(
    config: Path, workdir: Path, extra_args: tuple[str, ...] = (), timeout: float = 20.0
) -> contextlib.AbstractContextManager[Service]:
    """A Prometheus on a free loopback port, with exemplar storage, data in ``workdir/prometheus-data``."""

    def flags(port: int, data: Path) -> list[str]:
        return [
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
            *extra_args,
        ]

    return run_binary("prometheus", flags, workdir, timeout)
