"""Alertmanager on loopback, on a copy of the shipped config whose webhooks point at us."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from .paths import ROOT
from .processes import LOOPBACK, Service, http_get, http_post_json, run_binary

__all__ = ["alertmanager", "alertmanager_config", "get_alerts", "post_alerts"]


def alertmanager_config(path: Path, webhook_url: str, group_interval: str = "1s") -> Path:
    """alertmanager/alertmanager.yml with webhooks on ``webhook_url`` (same paths: /page,
    /ticket), a group wait of 1 s instead of 30 s and ``group_interval`` instead of 5 m.
    Routes and inhibitions as shipped."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval=group_interval, repeat_interval="1h")
    for route in config["route"].get("routes") or []:
        route.pop("group_wait", None)
        route.pop("group_interval", None)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs") or []:
            hook["url"] = webhook_url + urllib.parse.urlsplit(hook["url"]).path
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager(
    config: Path, workdir: Path, extra_args: tuple[str, ...] = (), timeout: float = 15.0
) -> contextlib.AbstractContextManager[Service]:
    """An Alertmanager on a free loopback port, clustering off, data in ``workdir/alertmanager-data``."""

    def flags(port: int, data: Path) -> list[str]:
        return [
            f"--config.file={config}",
            f"--storage.path={data}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]

    return run_binary("alertmanager", flags, workdir, timeout)


def post_alerts(alertmanager_url: str, alerts: list[dict[str, Any]]) -> None:
    """POST alerts to Alertmanager's API v2 (labels, annotations, optional startsAt)."""
    status, body = http_post_json(f"{alertmanager_url}/api/v2/alerts", alerts)
    if status != 200:
        raise RuntimeError(f"Alertmanager refused alerts: {status} {body!r}")


def get_alerts(alertmanager_url: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{alertmanager_url}/api/v2/alerts")
    if status != 200:
        raise RuntimeError(f"GET alerts: {status} {body!r}")
    alerts: list[dict[str, Any]] = json.loads(body)
    return alerts
