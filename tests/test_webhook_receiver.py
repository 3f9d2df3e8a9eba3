"""examples/webhook_receiver.py: logs each alert once, tolerates Alertmanager's re-sends."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from stack import serving
from webhook_receiver import make_server  # examples/ is on sys.path (conftest)


@pytest.fixture
def server() -> Iterator[Any]:
    with serving(make_server("127.0.0.1", 0), "alert-webhook") as srv:
        yield srv


def _post(srv: Any, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def _alert(status: str, fingerprint: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "InferenceP99AboveSLO", "model": "sentiment", "severity": "critical"},
        "annotations": {"summary": "P99 above objective"},
        "startsAt": "2026-11-24T21:00:00Z",
        "fingerprint": fingerprint,
    }


def test_logs_each_alert_once(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    payload = {"version": "4", "groupKey": "g", "alerts": [_alert("firing", "a1"), _alert("firing", "b2")]}
    with caplog.at_level("INFO", logger="alert-webhook"):
        assert _post(server, "/page", payload) == {"new": 2}
        assert _post(server, "/page", payload) == {"new": 0}  # a re-send
        assert _post(server, "/page", {"alerts": [_alert("resolved", "a1")]}) == {"new": 1}
    assert [(a["receiver"], a["status"], a["fingerprint"]) for a in server.alerts.received] == [
        ("page", "firing", "a1"),
        ("page", "firing", "b2"),
        ("page", "resolved", "a1"),
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("InferenceP99AboveSLO" in line and not line.startswith("duplicate") for line in lines) == 3
    assert sum(line.startswith("duplicate") for line in lines) == 2


def test_health_and_bad_input(server: Any) -> None:
    port = server.server_address[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        assert resp.status == 200
    req = urllib.request.Request(f"http://127.0.0.1:{port}/page", data=b"not json")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
