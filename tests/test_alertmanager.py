"""alertmanager/alertmanager.yml: amtool checks, routing, and a real Alertmanager that
notifies a loopback webhook and applies the inhibition rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import (
    Service,
    WebhookReceiver,
    alertmanager,
    find_binary,
    get_alerts,
    post_alerts,
    run_tool,
    wait_until,
    webhook_receiver,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
AMTOOL = find_binary("amtool")
ALERTMANAGER = find_binary("alertmanager")

pytestmark = pytest.mark.stack


def _config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return data


@pytest.mark.skipif(AMTOOL is None, reason="amtool not on PATH")
def test_amtool_check_config() -> None:
    assert AMTOOL is not None
    result = run_tool([AMTOOL, "check-config", str(CONFIG)], timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(AMTOOL is None, reason="amtool not on PATH")
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "InferenceLatencySLOBurnRate", "severity": "critical"}, "page"),
        ({"alertname": "GPUXidErrors", "severity": "warning", "gpu": "0"}, "ticket"),
        ({"alertname": "DriftInsufficientData", "severity": "info"}, "ticket"),
        ({"alertname": "SomethingWithoutSeverity"}, "ticket"),
    ],
)
def test_routes(labels: dict[str, str], receiver: str) -> None:
    assert AMTOOL is not None
    argv = [AMTOOL, "config", "routes", "test", f"--config.file={CONFIG}"]
    argv += [f"{k}={v}" for k, v in labels.items()]
    result = run_tool(argv, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver], result.stdout


def test_shipped_timings_and_grouping() -> None:
    route = _config()["route"]
    assert route["group_by"] == ["alertname", "model", "stage"]
    # Production values, explicit (the live test below uses a copy with 1s).
    assert (route["group_wait"], route["group_interval"]) == ("30s", "5m")
    assert "repeat_interval" in route
    urls = [w["url"] for r in _config()["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://alert-webhook:5001/") for u in urls)


def _test_config(tmp: Path, webhook_url: str) -> Path:
    """The shipped config with 1s grouping and the webhooks pointed at ``webhook_url``."""
    config = _config()
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook["url"].replace("http://alert-webhook:5001", webhook_url)
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, WebhookReceiver]]:
    if ALERTMANAGER is None:
        pytest.skip("alertmanager binary (prometheus-alertmanager) not on PATH")
    tmp = tmp_path_factory.mktemp("alertmanager")
    with webhook_receiver() as hook, alertmanager(_test_config(tmp, hook.url), tmp) as am:
        yield am, hook


def _alert(**labels: str) -> dict[str, Any]:
    return {"labels": labels, "annotations": {"summary": "test"}}


def _notified(hook: WebhookReceiver, path: str, **labels: str) -> bool:
    return any(
        p == path and any(labels.items() <= a["labels"].items() for a in body["alerts"])
        for p, body in hook.snapshot()
        if isinstance(body, dict)
    )


@pytest.mark.timeout(30)
def test_live_alertmanager_routes_to_webhooks(live: tuple[Service, WebhookReceiver]) -> None:
    am, hook = live
    post_alerts(
        am.url,
        [
            _alert(alertname="InferenceErrorRatioHigh", severity="critical", model="route-a"),
            _alert(alertname="DriftDetected", severity="warning", model="route-b"),
        ],
    )
    _, body = hook.wait_for(lambda p, b: p == "/page", timeout=15)
    assert body["receiver"] == "page" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "InferenceErrorRatioHigh", "model": "route-a"}
    wait_until(lambda: _notified(hook, "/ticket", model="route-b"), 15, what="ticket")
    assert not _notified(hook, "/page", model="route-b")
    assert not _notified(hook, "/ticket", model="route-a")


@pytest.mark.timeout(30)
def test_live_alertmanager_inhibits(live: tuple[Service, WebhookReceiver]) -> None:
    am, hook = live
    post_alerts(
        am.url,
        [
            # An SLO breach hides the regression alert of the same model only.
            _alert(alertname="InferenceP99AboveSLO", severity="warning", model="inh-bert"),
            _alert(alertname="InferenceP99RegressionVsYesterday", severity="warning", model="inh-bert"),
            _alert(alertname="InferenceP99RegressionVsYesterday", severity="warning", model="inh-gpt"),
            # A page hides the ticket of the same alert and model (and its regression alert);
            # not another model's or another GPU's.
            _alert(alertname="InferenceLatencySLOBurnRate", severity="critical", model="inh-llama"),
            _alert(alertname="InferenceLatencySLOBurnRate", severity="warning", model="inh-llama"),
            _alert(alertname="InferenceP99RegressionVsLastWeek", severity="warning", model="inh-llama"),
            _alert(alertname="InferenceLatencySLOBurnRate", severity="warning", model="inh-t5"),
            _alert(alertname="GPUMemoryNearFull", severity="critical", instance="a", gpu="1"),
            _alert(alertname="GPUMemoryNearFull", severity="warning", instance="a", gpu="0"),
        ],
    )

    def states() -> dict[tuple[str, str, str], str]:
        return {
            (
                a["labels"]["alertname"],
                a["labels"].get("model") or a["labels"].get("gpu", ""),
                a["labels"]["severity"],
            ): a["status"]["state"]
            for a in get_alerts(am.url)
        }

    # Inhibition is applied when groups are flushed (group_wait 1s).
    wait_until(lambda: "suppressed" in states().values(), 15, what="an inhibited alert")
    time.sleep(1.5)  # let every group flush once more
    got = states()
    assert got[("InferenceP99RegressionVsYesterday", "inh-bert", "warning")] == "suppressed"
    assert got[("InferenceP99RegressionVsYesterday", "inh-gpt", "warning")] == "active"
    assert got[("InferenceLatencySLOBurnRate", "inh-llama", "warning")] == "suppressed"
    assert got[("InferenceP99RegressionVsLastWeek", "inh-llama", "warning")] == "suppressed"
    assert got[("InferenceLatencySLOBurnRate", "inh-t5", "warning")] == "active"
    assert got[("GPUMemoryNearFull", "0", "warning")] == "active"
    assert got[("InferenceP99AboveSLO", "inh-bert", "warning")] == "active"

    # The suppressed alerts never reach a receiver; their neighbours do.
    wait_until(lambda: _notified(hook, "/ticket", model="inh-t5"), 15, what="t5 ticket")
    assert _notified(hook, "/ticket", alertname="InferenceP99RegressionVsYesterday", model="inh-gpt")
    assert not _notified(hook, "/ticket", alertname="InferenceP99RegressionVsYesterday", model="inh-bert")
    assert not _notified(hook, "/ticket", alertname="InferenceLatencySLOBurnRate", model="inh-llama")
    assert _notified(hook, "/page", alertname="InferenceLatencySLOBurnRate", model="inh-llama")


@pytest.mark.timeout(30)
def test_live_alertmanager_one_notification_names_model_and_stage(live: tuple[Service, WebhookReceiver]) -> None:
    am, hook = live
    post_alerts(
        am.url,
        [
            _alert(alertname="InferenceP99AboveSLO", severity="warning", model="att-bert"),
            _alert(alertname="InferenceSLOBreachByStage", severity="warning", model="att-bert", stage="preprocess"),
            _alert(alertname="InferenceP99AboveSLO", severity="warning", model="att-gpt"),  # no stage named
        ],
    )
    _, body = hook.wait_for(
        lambda p, b: isinstance(b, dict) and b.get("groupLabels", {}).get("model") == "att-bert", timeout=15
    )
    assert body["groupLabels"] == {"alertname": "InferenceSLOBreachByStage", "model": "att-bert", "stage": "preprocess"}
    wait_until(lambda: _notified(hook, "/ticket", model="att-gpt"), 15, what="gpt ticket")
    time.sleep(1.5)  # let every group flush once more
    assert not _notified(hook, "/ticket", alertname="InferenceP99AboveSLO", model="att-bert")
